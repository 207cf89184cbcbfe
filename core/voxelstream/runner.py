"""The per-volume runner: the one loop behind every command that writes one output per volume
(``ingest``, ``run``, task commands such as preprocessing or dense inference).

For each volume, in order: filter (modality, a known error) -> skip when the output is
complete with the same parameters *and* made from the same inputs (the fingerprint) ->
lock the output (across processes; released when the holder dies) -> build the lazy output ->
write it under a staging name -> check the inputs did not change meanwhile -> move it into
place -> report one line. A failing volume prints ``error: <id>: reason`` and the others go
on; every run writes a manifest.

Several volumes are in flight at once (bounded by ``in_flight``): on threads by default, and
on dask.distributed (futures collected with ``as_completed``) when a distributed client is
active (``--scheduler local:N`` / ``tcp://...``). There a task does all of a volume's work:
the worker opens the store, rebuilds the plugins from entry points, takes the output lock
(so a dead worker never leaves a stale lock behind), decides the skip, computes the volume
with its own threads and stages it. Small volumes go several to a task, computed one after
the other (a task costs the client and the scheduler a few ms of CPU, as much as a small
volume's own work); each still reports its own line, and one volume's failure is its own.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .batch import BatchReport, Outcome, describe_error
from .errors import StoreError, VoxelstreamError
from .progress import run_progress
from .privacy import printable  # ids and paths come from files: never print control characters raw

__all__ = [
    "Accepts",
    "VolumeJob",
    "run_per_volume",
    "stored_jobs",
    "StoredJobs",
    "input_fingerprint",
    "default_in_flight",
]

#: Modality values that say nothing about the image (DICOM "OT" = other).
UNKNOWN_MODALITIES = ("", "OT", None)


@dataclass(frozen=True)
class Accepts:
    """Which stored volumes a task's commands act on.

    A volume whose ``meta["modality"]`` is known acts only if it equals ``modality``. A volume
    of unknown modality (none recorded, or DICOM's "OT") acts when it fits: ``spatial_ndim``
    spatial axes (when given) in ``units`` (when given). ``modality=None`` accepts everything.
    CT preprocessing: ``Accepts("CT", spatial_ndim=3, units="mm")`` (a ``.mhd`` CT has no
    modality, a colour photograph has 2 spatial axes in pixels).
    """

    modality: str | None = None
    spatial_ndim: int | None = None
    units: str | None = None

    def reason_to_skip(self, attrs: Mapping[str, Any]) -> str | None:
        """``None`` when the stored output described by ``attrs`` is accepted, else why not."""
        if self.modality is None:
            return None
        have = (attrs.get("meta") or {}).get("modality")
        if have not in UNKNOWN_MODALITIES:
            if str(have).upper() == self.modality.upper():
                return None
            return f"modality {have}, not {self.modality}"
        axes = [a for a in attrs.get("axes", ["c", "z", "y", "x"]) if a != "c"]
        units = set(attrs.get("units") or ["mm"] * len(axes))
        if self.spatial_ndim is not None and len(axes) != self.spatial_ndim:
            return f"modality unknown and {len(axes)}-D, not a {self.spatial_ndim}-D {self.modality} volume"
        if self.units is not None and units != {self.units}:
            return f"modality unknown and in {'/'.join(sorted(units))}, not {self.units} as {self.modality} is"
        return None


def as_accepts(accepts: Accepts | Mapping[str, Any] | str | None) -> Accepts:
    """``"CT"`` -> ``Accepts("CT")``; a mapping -> ``Accepts(**mapping)`` (so a command module
    need not import the runner to declare it); ``None`` -> accept all."""
    if isinstance(accepts, Accepts):
        return accepts
    if isinstance(accepts, Mapping):
        return Accepts(**accepts)
    return Accepts(modality=accepts)


@dataclass(frozen=True)
class VolumeJob:
    """One volume's work for :func:`run_per_volume`.

    Attributes:
        volume_id: the volume (its output is ``volumes/<volume_id>/<output>``).
        build: makes the lazy output :class:`Volume`; called only when the volume is not
            skipped, possibly on a dask.distributed worker (so picklable: a module-level
            function or ``functools.partial``; closures travel with cloudpickle).
        fingerprint: returns what the output is made from *now* (source files, input tokens);
            part of the skip decision, and checked again just before the output is committed.
        label: how output lines name the volume (default ``volume_id``).
        error: a failure known up front (an unreadable input): reported, not run.
        note: a reason not to act on this volume (another modality): one note line, no error.
        nbytes: a rough size of the volume (``None``: unknown); on dask.distributed, volumes
            together under :data:`BATCH_BYTES` may share one task.
    """

    volume_id: str
    build: Callable[[], Any] | None = None
    fingerprint: Callable[[], Mapping[str, Any]] | None = None
    label: str = ""
    error: str | None = None
    note: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    nbytes: int | None = None

    @property
    def name(self) -> str:
        return self.label or self.volume_id


def input_fingerprint(store: Any, volume_id: str, inputs: Sequence[str],
                      known: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The completion tokens of ``inputs`` of ``volume_id`` (a new token each time an input
    is rewritten): what a derived output is made from. Raises :class:`StoreError` naming the
    volume when an input is missing, incomplete or damaged. ``known``: attributes of some
    inputs just read by the caller (not read again)."""
    known = known or {}
    return {"inputs": {name: store.completion_token(volume_id, name, attrs=known.get(name)) for name in inputs}}


def _any_output_attrs(store: Any, volume_id: str) -> dict[str, Any]:
    """The attributes of some readable output of the volume (its modality and axes decide
    whether a task acts on it even when the task's input output is missing)."""
    for name in store.names(volume_id):
        try:
            attrs = store.output_attrs(volume_id, name)
        except VoxelstreamError:
            continue
        if attrs:
            return attrs
    return {}


class StoredJobs(Sequence[VolumeJob]):
    """What :func:`stored_jobs` returns: one :class:`VolumeJob` per volume, each made (its input's
    document read) when it is first reached (``make`` must not raise: :func:`stored_jobs` turns
    any error into the volume's error job). A run's first volumes start while the last ones are
    still unread: before, 150 small volumes waited 11-15 ms for the whole list, a store of
    thousands of volumes about a second."""

    def __init__(self, ids: Sequence[str], make: Callable[[str], VolumeJob]) -> None:
        self._ids, self._make = list(ids), make
        self._made: dict[int, VolumeJob] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[VolumeJob]:
        # by position, not until an IndexError (Sequence's default): an IndexError raised while
        # making a job must not end the run early without a word
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError(index)
        if i not in self._made:
            self._made[i] = self._make(self._ids[i])
        return self._made[i]


def stored_jobs(
    store: Any,
    input: str | Sequence[str],
    build: Callable[[str], Any],
    *,
    accepts: Accepts | Mapping[str, Any] | str | None = None,
) -> StoredJobs:
    """One :class:`VolumeJob` per volume in ``store`` (made as the sequence is walked, see
    :class:`StoredJobs`): ``build(volume_id)`` makes the output from the stored ``input``
    output(s). Volumes rejected by ``accepts`` get a note; a volume whose input is missing,
    incomplete or damaged gets an error (never a silent skip)."""
    import functools

    inputs = (input,) if isinstance(input, str) else tuple(input)
    acc = as_accepts(accepts)

    def make(vid: str) -> VolumeJob:
        try:
            first = store.output_attrs(vid, inputs[0])
            attrs = first or _any_output_attrs(store, vid)
            note = acc.reason_to_skip(attrs) if attrs else None
            if note is None:  # missing/incomplete input: an error now
                input_fingerprint(store, vid, inputs, known={inputs[0]: first})
        except Exception as exc:  # made while the run goes on: a damaged volume fails alone
            return VolumeJob(vid, error=describe_error(exc))
        if note is not None:
            return VolumeJob(vid, note=note)
        shape = attrs.get("shape")
        nbytes = 4 * math.prod(shape) if isinstance(shape, list) and all(isinstance(v, int) for v in shape) else None
        return VolumeJob(vid, functools.partial(build, vid), functools.partial(input_fingerprint, store, vid, inputs),
                         nbytes=nbytes)

    return StoredJobs(store.volume_ids(damaged=True), make)


def default_in_flight(client: Any = None) -> int:
    """Volumes in flight by default: on dask.distributed two per worker thread (one computing,
    one queued on the worker, so a worker never waits for a round trip through the client and
    the scheduler; only the computing one holds memory), on threads 2 (each volume already uses
    every core; a second one fills the gaps of small volumes). ``VOXELSTREAM_IN_FLIGHT`` (the
    ``--in-flight`` option) overrides."""
    env = os.environ.get("VOXELSTREAM_IN_FLIGHT", "")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise VoxelstreamError(f"VOXELSTREAM_IN_FLIGHT={env!r}: expected a whole number >= 1") from None
    if client is not None:
        threads = sum(client.nthreads().values()) or 1
        return 2 * threads
    return 2


@dataclass(frozen=True)
class _Work:
    """What a worker needs for one volume (picklable)."""

    store_path: str
    job: VolumeJob
    output: str
    params: Mapping[str, Any]
    chunks: Any
    keep_phi: bool
    provenance: Mapping[str, Any]
    force: bool
    describe: Callable[[Any], str] | None
    local_scheduler: bool
    skipped_text: str = "already done"


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    from .store.store import jsonable

    return jsonable(a) == jsonable(b)


def _execute(work: _Work) -> dict[str, Any]:
    """Lock -> skip check -> build -> stage -> check inputs -> commit, for one volume.
    Runs in a thread of this process or in a dask.distributed worker."""
    from .store import open_store

    store = open_store(work.store_path)
    job = work.job
    vid, output = job.volume_id, work.output
    with store.output_lock(vid, output) as waited:
        fp = dict(job.fingerprint()) if job.fingerprint else {}
        skip = (not work.force or waited) and store.is_complete(vid, output, work.params, fingerprint=fp)
        if not skip:
            return _make(store, work, fp)
    store.sweep(vid, output)  # what dead writers of the output left (the lock is free again)
    return {"status": "skipped", "detail": "done by another process" if waited else work.skipped_text}


def _make(store: Any, work: _Work, fp: Mapping[str, Any]) -> dict[str, Any]:
    """Build and write one volume's output (its lock held); ``fp``: its inputs' fingerprint."""
    job = work.job
    vid, output = job.volume_id, work.output
    vol = job.build()

    def inputs_unchanged() -> None:
        if job.fingerprint and not _same(fp, job.fingerprint()):
            raise StoreError(f"{vid}: its input changed while {output!r} was being made; run the command again")

    def write() -> None:
        store.write(vol, vid, output, chunks=work.chunks, params=work.params, fingerprint=fp,
                    provenance=work.provenance, keep_phi=work.keep_phi, before_commit=inputs_unchanged)

    if work.local_scheduler:
        # on a dask.distributed worker the volume's chunks run on this worker's threads
        # (on a one-thread worker in this thread: no hand-over to a pool thread per task)
        import dask

        from .scheduler import worker_threads

        threads = worker_threads()
        with dask.config.set({"scheduler": "sync"} if threads == 1 else {"scheduler": "threads", "num_workers": threads}):
            write()
    else:
        write()
    return {"status": "done", "shape": list(vol.shape), "detail": work.describe(vol) if work.describe else ""}


class _Failed(VoxelstreamError):
    """One volume of a task that failed on a worker: its one-line description (already made
    there, so a worker's exception never has to travel) and its traceback text."""

    def __init__(self, detail: str, trace: str = ""):
        super().__init__(detail)
        self.trace = trace


def _execute_each(works: Sequence[_Work]) -> list[dict[str, Any]]:
    """:func:`_execute` for each volume of one dask.distributed task, one after the other
    (so the task holds one volume's memory at a time); a volume's failure is recorded as
    its result and the next volume still runs."""
    import traceback

    results = []
    for work in works:
        try:
            results.append(_execute(work))
        except Exception as exc:  # one bad volume must not stop the others of its task
            results.append({"status": "failed", "detail": describe_error(exc),
                            "trace": "".join(traceback.format_exception(exc))})
    return results


def _result(res: dict[str, Any]) -> dict[str, Any]:
    if res["status"] == "failed":
        raise _Failed(res["detail"], res.get("trace", ""))
    return res


#: On dask.distributed, consecutive volumes whose :attr:`VolumeJob.nbytes` add up to at most
#: this share one task (at most :data:`MAX_BATCH` of them, fewer towards the end of the run
#: so that the workers finish together). 150 volumes of 0.2 MB: benchmarks/RESULTS.md.
BATCH_BYTES = 16 * 2**20
MAX_BATCH = 32
#: Batches shrink so that this many tasks per worker thread remain for what is left (150
#: volumes on 2 workers: 14 tasks, 32 32 28 19 13 8 6 4 2 2 1 1 1 1). Each task costs the
#: client and the scheduler about 5-7 ms of CPU on this 2-core machine (10 message hops), taken
#: from the volumes' share of the cores; the last tasks must be small enough that the workers
#: finish together (a worker already holds its next task when it starts one). 2 made 19 tasks,
#: 1 made 10 but let the workers end up to 80 ms apart; 1.5 was faster than both
#: (benchmarks/RESULTS.md, "Volumes in flight on local:N").
TAIL_TASKS = 1.5


def _batches(works: Iterator[tuple[int, VolumeJob, _Work]], total: int,
             threads: int) -> Iterator[list[tuple[int, VolumeJob, _Work]]]:
    """Group consecutive small volumes (see :data:`BATCH_BYTES`); a volume of unknown or
    large size goes alone."""
    batch: list[tuple[int, VolumeJob, _Work]] = []
    size = 0
    for item in works:
        est = item[1].nbytes
        # keep TAIL_TASKS tasks per worker thread for what is left: no worker idles at the end
        limit = max(1, min(MAX_BATCH, int((total - batch[0][0] + 1) // (TAIL_TASKS * threads)))) if batch else 1
        if batch and (est is None or size + est > BATCH_BYTES or len(batch) >= limit):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += BATCH_BYTES + 1 if est is None else est
    if batch:
        yield batch


def _active_client() -> Any:
    """The dask.distributed client the current scheduler setting points at, if any."""
    if "distributed" not in sys.modules:  # never imported: no client can exist
        return None
    import dask

    if dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
        return None  # a local scheduler was chosen explicitly
    try:
        from distributed import default_client

        return default_client()
    except ValueError:  # no client
        return None


def _pending(executor: Any, client: Any, works: Iterator[tuple[int, VolumeJob, _Work]], cap: int,
             resources: Mapping[str, float] | None,
             total: int = 0) -> Iterator[tuple[int, VolumeJob, Callable[[], dict[str, Any]]]]:
    """Submit up to ``cap`` tasks at a time; yield ``(n, job, result)`` for each volume as
    its task completes (whatever order), submitting the next one in its place. ``result()``
    returns the volume's result or raises its error."""
    if client is not None:
        from distributed import as_completed

        def submit(batch: list[tuple[int, VolumeJob, _Work]]) -> Any:
            w = batch[0][2]
            more = f"-and-{len(batch) - 1}" if len(batch) > 1 else ""
            return client.submit(_execute_each, [w for _, _, w in batch], pure=False,
                                 resources=dict(resources) if resources else None,
                                 key=f"volume-{w.output}-{w.job.volume_id}{more}-{os.urandom(4).hex()}")

        def each(batch: list[tuple[int, VolumeJob, _Work]], fut: Any) -> Iterator[tuple[int, VolumeJob, Any]]:
            try:
                results = fut.result()
            except Exception as exc:  # the task itself failed (its worker died: a crash in native code)
                if len(batch) > 1:
                    # one volume may have killed it: each goes again in a task of its own, so
                    # that only the volume that kills its worker fails (the others are redone,
                    # or found done)
                    for item in batch:
                        again = submit([item])
                        running[again] = [item]
                        queue.add(again)
                    return

                def raise_it(exc: Exception = exc) -> dict[str, Any]:
                    raise exc

                n, job, _ = batch[0]
                yield n, job, raise_it
                return
            for (n, job, _), res in zip(batch, results):
                yield n, job, lambda res=res: _result(res)

        threads = sum(client.nthreads().values()) or 1
        running: dict[Any, list[tuple[int, VolumeJob, _Work]]] = {}
        queue = as_completed()
        for batch in _batches(works, total, threads):
            fut = submit(batch)
            running[fut] = batch
            queue.add(fut)
            if len(running) >= cap:
                done = next(queue)
                yield from each(running.pop(done), done)
        for done in queue:
            yield from each(running.pop(done), done)
        return

    import concurrent.futures as cf

    running_local: dict[cf.Future, tuple[int, VolumeJob]] = {}
    for n, job, w in works:
        running_local[executor.submit(_execute, w)] = (n, job)
        if len(running_local) >= cap:
            finished, _ = cf.wait(running_local, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                yield (*running_local.pop(f), f.result)
    for f in cf.as_completed(list(running_local)):
        yield (*running_local.pop(f), f.result)


def run_per_volume(
    store: Any,
    jobs: Iterable[VolumeJob],
    *,
    output: str,
    command: str,
    params: Mapping[str, Any],
    chunks: Any = None,
    force: bool = False,
    keep_phi: bool = False,
    provenance: Mapping[str, Any] | None = None,
    in_flight: int | None = None,
    resources: Mapping[str, float] | None = None,
    describe: Callable[[Any], str] | None = None,
    record: Mapping[str, Any] | None = None,
    numbered: bool = True,
    skipped_text: str = "already done",
    out: TextIO | None = None,
    err: TextIO | None = None,
    redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> BatchReport:
    """Write ``output`` of every job's volume into ``store``; returns the report (its
    ``exit_code`` is 1 when any volume failed).

    Args:
        jobs: one :class:`VolumeJob` per volume (see :func:`stored_jobs` for outputs made
            from stored outputs).
        output: the output name written for each volume.
        command: names the run in the manifest (``runs/<time>-<command>.json``) and progress.
        params: what makes two outputs the same (with the fingerprint); ``force`` redoes
            outputs that are complete with the same ones.
        chunks, keep_phi, provenance: passed to :meth:`Store.write`.
        in_flight: volumes in flight at once (default :func:`default_in_flight`); memory is
            bounded by it times one volume's bound. On dask.distributed it counts tasks: small
            volumes batched into one task (see :data:`BATCH_BYTES`) are computed one at a time.
        resources: dask.distributed resources each volume's task needs (``{"GPU": 1}``).
        describe: extra text for a volume's done line, from the output :class:`Volume`.
        record: extra fields for the manifest.
        redact: applied to each outcome (a dict) before it goes into the manifest.
        numbered: prefix lines with ``[n/N]``.

    Lines: ``[n/N] <id>\\t<shape>`` (done), ``[n/N] <id>\\t(already done)`` (skipped) on
    ``out``; ``note: <id>: ...`` (not acted on) and ``error: <id>: reason`` on ``err``.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    store.check_writable()  # a read-only store: one line, before any volume is touched
    jobs = jobs if isinstance(jobs, Sequence) else list(jobs)  # a Sequence may make its items lazily (StoredJobs)
    total = len(jobs)
    report = BatchReport()
    prov = {"stage": command, **(provenance or {})}
    client = _active_client()
    cap = max(1, in_flight or default_in_flight(client))
    started = time.perf_counter()

    def prefix(n: int) -> str:
        return f"[{n}/{total}] " if numbered else ""

    def add(outcome: Outcome, t0: float) -> None:
        outcome.seconds = round(time.perf_counter() - t0, 3)
        report.outcomes.append(outcome)

    def fail(job: VolumeJob, detail: str, t0: float) -> None:
        print(printable(f"error: {job.name}: {detail}"), file=err, flush=True)
        add(Outcome(job.name, "failed", detail, info={"id": job.volume_id, **job.info}), t0)

    def todo() -> Iterator[tuple[int, VolumeJob, _Work]]:
        for n, job in enumerate(jobs, 1):
            t0 = time.perf_counter()
            if job.error is not None:
                fail(job, job.error, t0)
                progress.advance()
                continue
            if job.note is not None:
                print(printable(f"note: {job.volume_id}: {job.note}; skipped"), file=err, flush=True)
                add(Outcome(job.name, "skipped", job.note, info={"id": job.volume_id, **job.info}), t0)
                progress.advance()
                continue
            try:
                # the inputs' fingerprint only for an output that is complete: a fresh run reads
                # two documents per volume here, not four (the worker checks again, under the lock)
                attrs = {} if force else store.output_attrs(job.volume_id, output)
                if attrs.get("complete") is True:
                    fp = dict(job.fingerprint()) if job.fingerprint else {}
                    if store.is_complete(job.volume_id, output, params, fingerprint=fp, attrs=attrs):
                        store.sweep(job.volume_id, output)
                        print(f"{prefix(n)}{printable(job.volume_id)}\t({skipped_text})", file=out, flush=True)
                        add(Outcome(job.name, "skipped", info={"id": job.volume_id, **job.info}), t0)
                        progress.advance()
                        continue
            except Exception as exc:  # a damaged volume: reported, the others go on
                fail(job, describe_error(exc), t0)
                progress.advance()
                continue
            starts[n] = t0
            yield n, job, _Work(str(store.path), job, output, params, chunks, keep_phi, prov, force, describe,
                                client is not None, skipped_text)

    starts: dict[int, float] = {}
    import concurrent.futures as cf

    with run_progress(command, total, distributed=client is not None) as progress, \
            cf.ThreadPoolExecutor(max_workers=cap, thread_name_prefix="voxelstream-volume") as executor:
        try:
            for n, job, result in _pending(executor, client, todo(), cap, resources, total):
                t0 = starts.pop(n, started)
                try:
                    res = result()
                except Exception as exc:  # one bad volume must not stop the others
                    fail(job, describe_error(exc), t0)
                    if os.environ.get("VOXELSTREAM_DEBUG"):
                        import traceback

                        if isinstance(exc, _Failed):  # raised on a worker: its traceback as text
                            print(exc.trace, file=err, end="")
                        else:
                            traceback.print_exception(exc, file=err)
                else:
                    info = {"id": job.volume_id, **job.info}
                    if res["status"] == "skipped":
                        print(f"{prefix(n)}{printable(job.volume_id)}\t({printable(res['detail'])})", file=out, flush=True)
                        add(Outcome(job.name, "skipped", res["detail"], info=info), t0)
                    else:
                        shape = "x".join(map(str, res["shape"]))
                        extra = f" {res['detail']}" if res.get("detail") else ""
                        print(f"{prefix(n)}{printable(job.volume_id)}\t{shape}{extra}", file=out, flush=True)
                        add(Outcome(job.name, "done", info={**info, "shape": res["shape"]}), t0)
                progress.advance()
        except KeyboardInterrupt:
            # volumes not started are dropped; those computing finish their staging (never
            # visible half-written) and the command stops
            executor.shutdown(wait=False, cancel_futures=True)
            raise
    items = report.as_record()
    if redact is not None:  # e.g. ingest without --keep-phi: no source path in the manifest
        items = {"items": [redact(item) for item in items["items"]]}
    try:
        store.write_manifest(command, {**(record or {}), "output": output, "params": dict(params), **items})
    except VoxelstreamError as exc:
        print(printable(f"error: {exc}"), file=err, flush=True)
        report.outcomes.append(Outcome("manifest", "failed", str(exc)))
    return report
