"""``voxelstream run PIPELINE.toml``."""

from __future__ import annotations

import argparse

from ..specs import CommandSpec
from .options import add_progress_option, add_scheduler_option


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", metavar="PIPELINE.toml", help="pipeline file (see examples/preprocess.toml)")
    add_scheduler_option(p, help="overrides the file's")
    add_progress_option(p)
    p.add_argument("--force", action="store_true", help="recompute outputs that are already complete")


def run(args: argparse.Namespace) -> int:
    # here, not at the top: listing commands must not import dask and zarr
    from ..pipeline import load_pipeline, run_pipeline
    from ..scheduler import use_scheduler
    from ..store import open_store

    pipe = load_pipeline(args.pipeline)
    store = open_store(pipe.store)
    with use_scheduler(args.scheduler or pipe.scheduler):
        report = run_pipeline(store, pipe.stages, input=pipe.input, output=pipe.output,
                              chunks=pipe.chunks, force=args.force)
    return report.exit_code


COMMAND = CommandSpec(
    name="run",
    help="run the stages of a pipeline file over every volume of a store",
    description=(
        "Run a pipeline file: [pipeline] store/input/output/chunks/scheduler, then one [[stages]]\n"
        "table per stage (name = \"resample\", its parameters...). Each volume's input is read\n"
        "chunk by chunk, all stages run fused per chunk, and the output is written to the store.\n"
        "Volumes already done with the same stages are skipped."
    ),
    add_arguments=add_arguments,
    run=run,
)
