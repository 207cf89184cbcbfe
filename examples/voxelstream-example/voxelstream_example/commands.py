"""The ``example`` task's commands: ``voxelstream example smooth`` and ``voxelstream example mix``.

Both follow the shape of every per-volume task command:

* ``add_arguments`` takes the options every store command shares from
  :func:`voxelstream.add_common_options` (``--store``, ``--scheduler``, ``--progress``) and
  adds its own;
* ``run`` lists one job per stored volume with :func:`voxelstream.stored_jobs`, which skips
  volumes of another modality with a note (``ACCEPTS``), and hands them to
  :func:`voxelstream.run_per_volume`: skip what is done with the same parameters, progress,
  several volumes in flight, one ``error:`` line per failed volume while the others go on,
  and a manifest under ``<store>/runs/``.

This module is imported at every ``voxelstream`` start (to list the commands), so dask, zarr
and JAX are imported only inside ``run`` and the build functions.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
from pathlib import Path
from typing import Any

import voxelstream as vs

__all__ = ["MODALITY", "SMOOTH", "MIX", "smooth_volume", "mix_volume"]

#: DICOM's Modality for slide microscopy: the images this task is for.
MODALITY = "SM"


def _accepts() -> Any:
    # SM images; an image of unknown modality only when it is 2-D (a tile, not a CT volume)
    return vs.Accepts(MODALITY, spatial_ndim=2)


def _run_jobs(args: argparse.Namespace, build: Any, extra: tuple[Any, ...], params: dict[str, Any],
              command: str) -> int:
    """The part both commands share: one job per stored volume (``build(store, input, *extra,
    volume_id)`` makes its lazy output), then the runner."""
    from voxelstream.scheduler import use_scheduler

    store = vs.open_store(args.store)  # a missing store: StoreError, printed as one line
    jobs = vs.stored_jobs(store, args.input, functools.partial(build, store, args.input, *extra),
                          accepts=_accepts())
    if not jobs:
        raise vs.VoxelstreamError(f"{args.store}: the store holds no volume; run 'voxelstream ingest' first")
    with use_scheduler(args.scheduler):
        report = vs.run_per_volume(store, jobs, output=args.name, command=command, params=params,
                                   force=args.force, provenance={"plugin": "example", "input": args.input})
    return report.exit_code


def _add_input_output(p: argparse.ArgumentParser, default_name: str) -> None:
    p.add_argument("--input", default="image", help="the stored output to read (default: image)")
    p.add_argument("--name", default=default_name, help=f"writes volumes/<id>/NAME (default: {default_name})")
    p.add_argument("--force", action="store_true", help="redo volumes already done with the same parameters")


# -- smooth -----------------------------------------------------------------------------------

def smooth_volume(store: Any, input: str, sigma: Any, volume_id: str) -> Any:
    """The lazy smoothed volume (module level, so it can travel to a dask.distributed worker)."""
    vol = store.open(volume_id, input)
    if isinstance(sigma, list) and len(sigma) != vol.spatial_ndim:  # say it in the option's words
        raise vs.VoxelstreamError(f"--sigma has {len(sigma)} values, the image has {vol.spatial_ndim} spatial axes "
                                  f"({' '.join(vol.axes)}); give one value or one per axis")
    return vs.get_stage("gaussian")(vol, sigma=sigma)


def _smooth_arguments(p: argparse.ArgumentParser) -> None:
    vs.add_common_options(p, store_help="the store holding the images (written by 'voxelstream ingest')")
    p.add_argument("--sigma", type=float, nargs="+", default=[1.0], metavar="S",
                   help="Gaussian sigma in pixels: one value, or one per spatial axis (y x) (default: 1)")
    _add_input_output(p, "smooth")


def _smooth_run(args: argparse.Namespace) -> int:
    if min(args.sigma) < 0:
        raise vs.VoxelstreamError(f"--sigma {' '.join(map(str, args.sigma))}: must be >= 0")
    sigma = args.sigma[0] if len(args.sigma) == 1 else list(args.sigma)
    return _run_jobs(args, smooth_volume, (sigma,), {"input": args.input, "sigma": sigma}, "example-smooth")


SMOOTH = vs.CommandSpec(
    name="smooth",
    help="Gaussian-smooth every stored microscopy image into volumes/<id>/smooth",
    description=(
        "For every volume in --store whose modality is SM (or unknown, if it is 2-D), smooth\n"
        "every channel with a Gaussian of --sigma pixels, chunk by chunk, and write\n"
        "volumes/<id>/<--name> (float32). Other modalities are skipped with a note.\n\n"
        "example:\n"
        "  voxelstream example smooth --store data.zarr --sigma 2"
    ),
    add_arguments=_smooth_arguments,
    run=_smooth_run,
)


# -- mix --------------------------------------------------------------------------------------

def mix_volume(store: Any, input: str, model_dir: str, volume_id: str) -> Any:
    """The lazy channel-mixed volume: the saved model applied chunk by chunk."""
    from voxelstream.models import read_model_json

    from .mixer import apply_block

    vol = store.open(volume_id, input)
    config = read_model_json(model_dir).get("config", {})
    cin, cout = int(config.get("channels_in", 0)), int(config.get("channels_out", 1))
    if vol.channels != cin:
        raise vs.VoxelstreamError(f"it has {vol.channels} channel(s), the model in {model_dir} takes {cin}")
    data = vol.data.rechunk({0: -1})  # the model needs every channel of a pixel in one block
    chunks = ((cout,), *data.chunks[1:])
    mixed = data.map_blocks(apply_block, model_dir=model_dir, chunks=chunks, dtype="float32")
    # the model's name, not its path: folder names may say more than they should
    return vol.with_history({"stage": "example-mix", "model": read_model_json(model_dir)["model"]}, data=mixed)


def _weights_digest(model_dir: str) -> str:
    """What makes two models the same for the skip decision: their saved weights and config."""
    h = hashlib.sha256()
    for name in ("model.json", "weights.npz"):
        try:
            h.update((Path(model_dir) / name).read_bytes())
        except FileNotFoundError:
            raise vs.VoxelstreamError(f"{model_dir}: no {name}; give a directory voxelstream.save_model wrote") from None
    return h.hexdigest()


def _mix_arguments(p: argparse.ArgumentParser) -> None:
    vs.add_common_options(p, store_help="the store holding the images (written by 'voxelstream ingest')")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="an example-mixer model directory (model.json + weights.npz, see voxelstream.save_model)")
    _add_input_output(p, "mixed")


def _mix_run(args: argparse.Namespace) -> int:
    model_dir = str(Path(args.model).resolve())
    params = {"input": args.input, "model": _weights_digest(model_dir)}  # new weights: redone
    return _run_jobs(args, mix_volume, (model_dir,), params, "example-mix")


MIX = vs.CommandSpec(
    name="mix",
    help="apply a saved example-mixer model to every stored microscopy image -> volumes/<id>/mixed",
    description=(
        "For every volume in --store whose modality is SM (or unknown, if it is 2-D), apply the\n"
        "channel-mixing model saved in --model pixel by pixel, chunk by chunk, and write\n"
        "volumes/<id>/<--name> (float32, the model's output channels). A new model redoes the volumes.\n\n"
        "example:\n"
        "  voxelstream example mix --store data.zarr --model mixer/"
    ),
    add_arguments=_mix_arguments,
    run=_mix_run,
)
