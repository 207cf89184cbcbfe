"""Store and runner benchmark (issue 9, item 8), each comparison side by side in one run:

* **in flight**: 150 small CT volumes (40 x 48 x 48 int16) preprocessed (resample to 1 mm +
  lung window, the ``ct preprocess`` stages) with ``--scheduler local:2`` vs ``local:1``, timed
  from after ``use_scheduler`` returned (workers warmed up) to the end of the run; ``fresh`` (the output made for the first time) and ``rerun``
  (``--force`` replacing it), pairs back to back in alternating order.
* **per-volume overhead on threads**: 150 tiny volumes (16^3) through the runner
  (``run_pipeline``: skip check, lock, staging, metadata, rename, line, manifest) with one
  volume in flight, against computing the same stage graphs from the same store into memory
  in a plain loop (the compute alone).
* **checksum cost**: ``ingest`` of a CT-like 400 x 512 x 512 int16 ``.mhd`` (210 MB) and the
  ``ct preprocess`` of it, with the store's crc32c codec and without it (the same code with
  the checksum codec removed), alternating.
* **discovery**: 5,000 DICOM files (10 series x 500 slices of 16 x 16) through
  ``voxelstream.discover`` against a plain ``pydicom.dcmread(stop_before_pixels=True)`` loop.

Every measured run is a fresh child process (``benchlib.run_child``: wall, CPU, peak RSS);
tables give medians of ``--runs``.

    .venv/bin/python benchmarks/bench_store.py [--workdir /tmp/vs-bench-store] [--runs 3] [--append]
        [--only inflight,ceiling,overhead,checksum,chunkmap,discovery]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from benchlib import append_results, run_child

HERE = Path(__file__).resolve()
N_SMALL = 150
SMALL_SHAPE = (40, 48, 48)
TINY_SHAPE = (16, 16, 16)
BIG_SHAPE = (400, 512, 512)
N_SERIES, N_SLICES = 10, 500


# -- inputs ---------------------------------------------------------------------------------------


def _ct_like(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    y, x = np.ogrid[-1:1:ny * 1j, -1:1:nx * 1j]
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
    lungs = (((np.abs(x) - 0.4) / 0.3) ** 2 + (y / 0.45) ** 2) < 1
    sl = np.where(body, 40, -1000).astype(np.int16)
    sl[lungs & body] = -850
    out = np.broadcast_to(sl, shape).copy()
    out += np.where(out > -1000, rng.normal(0, 20, shape), 0).astype(np.int16)
    return out


def make_small_store(path: Path, n: int, shape, modality: str = "CT") -> None:
    import voxelstream as vs

    if path.exists():
        return
    store = vs.open_store(path, create=True)
    for i in range(n):
        arr = _ct_like(shape, seed=i)
        store.write(vs.Volume.from_array(arr, spacing=(2.0, 1.0, 1.0), meta={"modality": modality}), f"v{i:04d}",
                    chunks=64)


def make_big_mhd(folder: Path) -> Path:
    import SimpleITK as sitk

    path = folder / "big.mhd"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        img = sitk.GetImageFromArray(_ct_like(BIG_SHAPE))
        img.SetSpacing((0.7, 0.7, 0.8))
        sitk.WriteImage(img, str(path))
    return path


def make_dicom_folder(folder: Path) -> Path:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if folder.exists():
        return folder
    folder.mkdir(parents=True)
    px = np.zeros((16, 16), np.int16).tobytes()
    for s in range(N_SERIES):
        series, study = generate_uid(), generate_uid()
        sub = folder / f"series{s}"
        sub.mkdir()
        for k in range(N_SLICES):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(str(sub / f"{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, study
            ds.PatientName, ds.PatientID = "BENCH^PHANTOM", "0"
            ds.ImagePositionPatient = [0.0, 0.0, float(k)]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
            ds.InstanceNumber = k + 1
            ds.Rows = ds.Columns = 16
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit, ds.PixelRepresentation = 15, 1
            ds.RescaleIntercept, ds.RescaleSlope = 0.0, 1.0
            ds.PixelData = px
            ds.save_as(str(sub / f"{k:04d}.dcm"), enforce_file_format=True)
    return folder


# -- children (each one measured run) -------------------------------------------------------------


def _ct_stages():
    from voxelstream_ct.preprocess_cmd import preprocess_stages

    return preprocess_stages()


def child_inflight(store_path: str, scheduler: str, mode: str = "fresh") -> dict:
    """One timed ``run_pipeline`` of the 150 volumes. ``fresh``: the output is made for the first
    time (the previous run's copy is deleted before the clock starts); ``rerun``: ``--force``
    replaces it, so every volume also moves its old output aside, for a background thread to
    delete (the last ones after the clock stops, when the worker exits)."""
    import shutil

    from voxelstream.pipeline import run_pipeline
    from voxelstream.plugins import get_plugin_manager
    from voxelstream.scheduler import use_scheduler
    from voxelstream.store import open_store

    store = open_store(store_path)
    with use_scheduler(scheduler) as client:
        # use_scheduler had every worker import the engine and build its plugin manager
        # (voxelstream.worker_setup.WarmUp), as a command does; the client does the same here
        # (start-up is bench_startup's: the same for 1 and 2 workers)
        stages = _ct_stages()
        get_plugin_manager()
        workers = len(client.nthreads())
        output = f"iso-{workers}"
        if mode == "fresh":
            for old in Path(store_path).glob(f"volumes/*/{output}"):
                shutil.rmtree(old)
        # the previous run's writes and deletions reach the disk now, not during this run (this
        # disk is mounted with `discard`: a deletion's cost comes at the next journal commit)
        os.sync()
        started = time.perf_counter()
        report = run_pipeline(store, stages, output=output, force=mode == "rerun", out=open("/dev/null", "w"))
        elapsed = time.perf_counter() - started
    assert report.exit_code == 0
    return {"run_s": elapsed, "workers": workers}


def child_share(store_path: str, part: str, nparts: str, output: str) -> None:
    """The ceiling of `inflight`: this process's share (every ``nparts``-th volume from
    ``part``) of the same volumes' work, each volume as a worker task runs it, with no dask
    scheduler, client or worker around it. Prints ``ready``, waits for a line on stdin (so the
    processes of one measurement start together), prints the seconds it took."""
    import functools

    import dask

    import voxelstream.runner as runner
    from voxelstream.pipeline import _build
    from voxelstream.plugins import get_plugin_manager
    from voxelstream.store import open_store

    get_plugin_manager()
    store = open_store(store_path)
    stages = _ct_stages()
    params = {"input": "image", "stages": [c.as_dict() for c in stages], "chunks": None}
    jobs = runner.stored_jobs(store, "image", functools.partial(_build, store, "image", stages))
    works = [runner._Work(store_path, job, output, params, None, False, {"stage": "run"}, False, None, False)
             for job in jobs]
    with dask.config.set(scheduler="sync"):
        runner._execute_each([dataclasses.replace(w, output=f"{output}-warm{part}") for w in works[:2]])
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.perf_counter()
        runner._execute_each(works[int(part)::int(nparts)])
        print(json.dumps({"run_s": time.perf_counter() - started}), flush=True)


def child_overhead(store_path: str, mode: str) -> dict:
    import dask

    from voxelstream.pipeline import StageCall, apply_stages, run_pipeline
    from voxelstream.store import open_store

    store = open_store(store_path)
    stages = [StageCall("gaussian", {"sigma": 1.0})]
    ids = store.volume_ids("image")
    apply_stages(store.open(ids[0]), stages).data.compute()  # imports, plugin manager
    t0 = time.perf_counter()
    if mode == "plain":
        for vid in ids:
            dask.compute(apply_stages(store.open(vid), stages).data)
    else:
        import uuid  # a new output each run: measured as a first run (no old output to replace)

        report = run_pipeline(store, stages, output=f"smooth-{uuid.uuid4().hex[:8]}", in_flight=int(mode[-1]),
                              out=open("/dev/null", "w"))
        assert report.exit_code == 0
    return {"s": time.perf_counter() - t0, "n": len(ids)}


_WITH_CRC: dict = {}


def _checksums(on: bool) -> None:
    """The store's codecs with (as shipped) or without the crc32c codec: zarr's codec list for
    arrays written through zarr-python, and the codec and array document of direct writes
    (which write plain Blosc chunks without it; reads follow each array's document)."""
    import voxelstream.store.direct as direct
    import voxelstream.store.planning as planning

    if not _WITH_CRC:
        _WITH_CRC.update(codecs=planning.default_codecs, codec=direct.default_codec, doc=direct.array_doc)
    if on:
        planning.default_codecs = _WITH_CRC["codecs"]
        direct.default_codec, direct.array_doc = _WITH_CRC["codec"], _WITH_CRC["doc"]
        return
    plain, doc = _WITH_CRC["codec"], _WITH_CRC["doc"]

    def array_doc_without_crc(*args, **kwargs):
        d = doc(*args, **kwargs)
        d["codecs"] = [c for c in d["codecs"] if c["name"] != "crc32c"]
        return d

    planning.default_codecs = lambda: [planning.default_compressor()]
    direct.default_codec = lambda dtype: direct.PlainCodec(plain(dtype).blosc, crc=False)
    direct.array_doc = array_doc_without_crc


def child_checksum_inproc(mhd: str, work: str, runs: str) -> dict:
    """Ingest, then preprocess, with and without crc32c alternating in ONE process (imports,
    interpreter start and page cache the same for both): ``runs`` of each, wall and CPU of
    the call only (stores removed between runs, not timed)."""
    import io
    import resource
    import shutil

    from voxelstream.ingest import ingest
    from voxelstream.pipeline import run_pipeline
    from voxelstream.store import open_store

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    res: dict = {}
    for i in range(int(runs) + 1):  # the first round warms up (imports, caches) and is dropped
        for crc in (("on", "off") if i % 2 == 0 else ("off", "on")):
            _checksums(crc == "on")
            path = Path(work) / f"inproc-{crc}.zarr"
            shutil.rmtree(path, ignore_errors=True)
            store = open_store(path, create=True)
            for kind in ("ingest", "preprocess"):
                w0, c0 = time.perf_counter(), cpu()
                if kind == "ingest":
                    report = ingest([mhd], store, chunks=64, out=io.StringIO())
                else:
                    report = run_pipeline(store, _ct_stages(), output="iso", chunks=64, out=io.StringIO())
                w, c = time.perf_counter() - w0, cpu() - c0
                assert report.exit_code == 0
                codecs = json.loads((path / "volumes/big" / ("image" if kind == "ingest" else "iso") / "0/zarr.json")
                                    .read_text())["codecs"]
                assert any(c["name"] == "crc32c" for c in codecs) == (crc == "on"), codecs  # measured what it says
                if i:
                    res.setdefault(f"{kind}-{crc}", []).append((w, c))
    return res


def child_checksum(kind: str, mhd: str, store_path: str, crc: str) -> dict:
    import shutil

    import voxelstream.store.chunkio  # noqa: F401 - the store imports these on first write: not in the timing
    import voxelstream.store.planning  # noqa: F401
    import voxelstream.store.reading  # noqa: F401

    _checksums(crc == "on")
    from voxelstream.ingest import ingest
    from voxelstream.pipeline import run_pipeline
    from voxelstream.store import open_store

    import resource

    if kind == "ingest":
        shutil.rmtree(store_path, ignore_errors=True)
        store = open_store(store_path, create=True)
    else:
        store = open_store(store_path)
        shutil.rmtree(store.path / "volumes" / "big" / "iso", ignore_errors=True)  # a first write, as ingest
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    if kind == "ingest":
        report = ingest([mhd], store, chunks=64, out=open("/dev/null", "w"))
    else:
        report = run_pipeline(store, _ct_stages(), output="iso", chunks=64, out=open("/dev/null", "w"))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    assert report.exit_code == 0
    codecs = json.loads((Path(store_path) / "volumes/big" / ("image" if kind == "ingest" else "iso") / "0/zarr.json")
                        .read_text())["codecs"]
    assert any(c["name"] == "crc32c" for c in codecs) == (crc == "on"), codecs  # measured what it says
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"s": time.perf_counter() - t0, "cpu": cpu}


def child_crc_share(mhd: str, work: str, runs: str) -> dict:
    """How much of a real ingest is the checksum: ``google_crc32c.value`` as the store calls
    it, timed call by call during ``runs`` ingests in one process (after a warm-up one)."""
    import io
    import resource
    import shutil
    import threading

    import google_crc32c

    import voxelstream.store.direct as direct
    from voxelstream.ingest import ingest
    from voxelstream.store import open_store

    real, lock, spent = google_crc32c.value, threading.Lock(), [0.0, 0, 0]

    def timed(data):
        t0 = time.perf_counter()
        value = real(data)
        dt = time.perf_counter() - t0
        with lock:
            spent[0] += dt
            spent[1] += 1
            spent[2] += len(data)
        return value

    direct.google_crc32c = type("TimedCrc", (), {"value": staticmethod(timed)})
    shares = []
    for i in range(int(runs) + 1):
        path = Path(work) / "crc-share.zarr"
        shutil.rmtree(path, ignore_errors=True)
        store = open_store(path, create=True)
        spent[:] = [0.0, 0, 0]
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        assert ingest([mhd], store, chunks=64, out=io.StringIO()).exit_code == 0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        if i:
            shares.append((spent[0], cpu, spent[1], spent[2]))
    return {"crc_s": [s[0] for s in shares], "cpu_s": [s[1] for s in shares], "calls": shares[0][2],
            "mb": shares[0][3] / 1e6}


def child_crc_micro() -> dict:
    """Per 64^3 int16 CT chunk, in one process (no scheduler): Blosc encode and decode, and
    the crc32c where the store computes it: of the bytes Blosc has just written (write path)
    and of the bytes just read from the chunk file (read path), each timed chunk by chunk
    beside its encode/decode. Also the crc of bytes no longer in the CPU cache (all chunks
    encoded first, then checksummed: what an earlier version of this row measured). Best of
    7 passes over 96 chunks (steady under load)."""
    import tempfile

    import google_crc32c

    from numcodecs import Blosc

    from voxelstream.store.planning import default_compressor  # the store's compressor

    cfg = default_compressor().to_dict()["configuration"]
    blosc = Blosc(cname=cfg["cname"], clevel=cfg["clevel"], shuffle=Blosc.SHUFFLE, typesize=2)
    vol = _ct_like((64 * 6, 256, 256))
    chunks = [np.ascontiguousarray(vol[z:z + 64, y:y + 64, x:x + 64]) for z in range(0, 384, 64)
              for y in range(0, 256, 64) for x in range(0, 256, 64)]
    encoded = [blosc.encode(c) for c in chunks]
    tmp = Path(tempfile.mkdtemp())
    files = []
    for i, e in enumerate(encoded):
        files.append(tmp / f"{i}")
        files[-1].write_bytes(e)
    pc = time.perf_counter

    def write_pass() -> tuple[float, float]:
        enc = crc = 0.0
        for c in chunks:
            t0 = pc()
            e = blosc.encode(c)
            t1 = pc()
            google_crc32c.value(e)
            enc, crc = enc + t1 - t0, crc + pc() - t1
        return enc, crc

    def read_pass() -> tuple[float, float]:
        dec = crc = 0.0
        for f in files:
            raw = f.read_bytes()
            t0 = pc()
            google_crc32c.value(raw)
            t1 = pc()
            blosc.decode(raw)
            dec, crc = dec + pc() - t1, crc + t1 - t0
        return dec, crc

    def cold_pass() -> tuple[float, float]:
        t0 = pc()
        for e in encoded:
            google_crc32c.value(e)
        return pc() - t0, 0.0

    def best(fn) -> tuple[float, float]:
        runs = [fn() for _ in range(7)]
        return tuple(min(r[i] for r in runs) / len(chunks) * 1000 for i in range(2))

    enc, crc_w = best(write_pass)
    dec, crc_r = best(read_pass)
    cold, _ = best(cold_pass)
    ratio = sum(c.nbytes for c in chunks) / sum(len(e) for e in encoded)
    return {"encode_ms": enc, "crc_write_ms": crc_w, "decode_ms": dec, "crc_read_ms": crc_r, "crc_cold_ms": cold,
            "ratio": ratio, "chunk_kb": sum(len(e) for e in encoded) / len(encoded) / 1024}


def child_chunkmap(store_path: str) -> dict:
    """The cost of recording which chunks hold a file (at completion) and of decoding that
    record (once per output and process, when it is first read): on the ingested 210 MB CT
    (its staged array: files walked, as the store does), and on a synthetic grid of 100,000
    chunks (about 52 GB of int16 at 64^3) with one chunk in 7 empty at random (no files:
    encode only)."""
    import base64
    import zlib

    from voxelstream.store import chunkmap

    array_dir = Path(store_path) / "volumes" / "big" / "image" / "0"
    pc = time.perf_counter
    t0 = pc()
    for _ in range(20):
        rec = chunkmap.record(array_dir)
    record_ms = (pc() - t0) / 20 * 1000
    grid = tuple(-(-s // 64) for s in BIG_SHAPE)
    t0 = pc()
    for _ in range(20):
        chunkmap.decode(rec["stored_chunks"], (1, *grid))
    decode_ms = (pc() - t0) / 20 * 1000
    big = np.random.default_rng(0).random((1, 50, 40, 50)) > 1 / 7  # random: the worst case for zlib
    t0 = pc()
    text = base64.b64encode(zlib.compress(np.packbits(big.ravel()).tobytes(), 6)).decode()
    big_encode_ms = (pc() - t0) * 1000
    t0 = pc()
    assert (chunkmap.decode(text, big.shape) == big).all()
    big_decode_ms = (pc() - t0) * 1000
    return {"chunks": rec["chunk_files"], "record_ms": record_ms, "decode_ms": decode_ms,
            "map_bytes": len(rec["stored_chunks"]), "big_chunks": big.size, "big_bytes": len(text),
            "big_encode_ms": big_encode_ms, "big_decode_ms": big_decode_ms}


def child_discovery(folder: str, mode: str) -> dict:
    from pathlib import Path

    files = sorted(p for p in Path(folder).rglob("*.dcm"))
    t0 = time.perf_counter()
    if mode == "pydicom":
        import pydicom

        uids = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files}
        n = len(uids)
    else:  # voxelstream-serial | voxelstream-threads (the default) | voxelstream-processes-N
        import voxelstream.parallel as parallel

        if mode == "voxelstream-serial":
            parallel.IO_THREADS = 1
        elif mode.startswith("voxelstream-processes-"):
            os.environ["VOXELSTREAM_DISCOVERY_WORKERS"] = mode.rsplit("-", 1)[1]
            parallel._main_is_ours = lambda: True  # this script has its main guard
        from voxelstream import discover

        n = sum(1 for item in discover([folder]) if hasattr(item, "volume_id"))
    return {"s": time.perf_counter() - t0, "files": len(files), "series": n}


CHILDREN = {"share": child_share, "crc_share": child_crc_share, "checksum_inproc": child_checksum_inproc, "chunkmap": child_chunkmap, "crc_micro": child_crc_micro, "inflight": child_inflight, "overhead": child_overhead, "checksum": child_checksum,
            "discovery": child_discovery}


def child(kind: str, *args: str) -> None:
    os.setsid()  # its own session: the kernel (autogroup) shares the CPU between sessions first
    sys.path.insert(0, str(HERE.parent))
    print(json.dumps(CHILDREN[kind](*args)))


# -- the comparisons ---------------------------------------------------------------------------------


def measure(kind: str, *args: str):
    run = run_child([str(HERE), "--child", kind, *args], env={"VOXELSTREAM_PROGRESS": "0"})
    return json.loads(run.last_line()), run


def med(xs):
    return statistics.median(xs)


def bench_inflight(work: Path, runs: int) -> str:
    store = work / "small.zarr"
    make_small_store(store, N_SMALL, SMALL_SHAPE)
    modes = ("fresh", "rerun")
    res: dict[tuple[str, int], list] = {(m, n): [] for m in modes for n in (1, 2)}
    for i in range(runs):
        for mode in modes:  # each pair back to back, 1 worker first in even runs, 2 first in odd ones
            for n in ((1, 2) if i % 2 == 0 else (2, 1)):
                res[mode, n].append(measure("inflight", str(store), f"local:{n}", mode))
    lines = ["| run | dask workers (1 thread each) | 150 volumes (s) | per volume (ms) | client + scheduler peak RSS (GiB) |",
             "|---|---|---|---|---|"]
    verdicts = []
    for mode in modes:
        rows = [(n, med(r["run_s"] for r, _ in res[mode, n]), med(c.peak_rss_gib for _, c in res[mode, n]))
                for n in (1, 2)]
        lines += [f"| {mode} | {n} | {t:.2f} | {t / N_SMALL * 1000:.1f} | {m:.2f} |" for n, t, m in rows]
        pairs = [a["run_s"] / b["run_s"] for (a, _), (b, _) in zip(res[mode, 1], res[mode, 2])]
        verdicts.append(f"{mode}: 2 workers vs 1 **{rows[0][1] / rows[1][1]:.2f}x**; pair by pair "
                        + ", ".join(f"{r:.2f}x" for r in pairs) + f" (median {med(pairs):.2f}x, "
                        f"interquartile {statistics.quantiles(pairs, n=4)[0]:.2f}-{statistics.quantiles(pairs, n=4)[2]:.2f}x)")
    return ("\n".join(lines) + "\n\n" + "; ".join(verdicts) + " (target >= 1.7x). "
            "`fresh`: the output is made for the first time (the previous run's copy deleted before the clock "
            "starts); `rerun`: `--force` replaces it, so each volume also moves its old output aside for a background "
            "thread to delete (the last ones after the clock stops). "
            "The cluster is the one `--scheduler local:N` starts (`use_scheduler`: N single-thread worker "
            "processes under nannies, the scheduler and dashboard in the client's process, "
            "voxelstream.scheduler.LOCAL_CLUSTER_SETTINGS), in a fresh process of its own session for each "
            "measurement, the disk synced before the clock starts. The whole cluster is one session: the kernel "
            "(autogroup) shares the CPU between sessions first, so a busy process of another session would take "
            "as much from two workers as from one (nothing else of ours ran). Timed from after `use_scheduler` "
            "returned (the workers warmed up, voxelstream.worker_setup) to the end of `run_pipeline`; cluster start "
            "not included.")


def _shares(store: Path, n: int) -> float:
    """Wall time of :func:`child_share` in ``n`` processes started together (their slowest)."""
    import shutil
    import subprocess
    import uuid

    output = f"share-{uuid.uuid4().hex[:8]}"
    procs = [subprocess.Popen([sys.executable, str(HERE), "--child", "share", str(store), str(i), str(n), output],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "VOXELSTREAM_PROGRESS": "0"})
             for i in range(n)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("\n")
        p.stdin.flush()
    took = max(json.loads(p.stdout.readline())["run_s"] for p in procs)
    for p in procs:
        p.wait()
    for old in [*store.glob(f"volumes/*/{output}"), *store.glob(f"volumes/*/{output}-warm*")]:
        shutil.rmtree(old)
    os.sync()  # as in child_inflight: this deletion is not paid inside the next measurement
    return took


def bench_ceiling(work: Path, runs: int) -> str:
    store = work / "small.zarr"
    make_small_store(store, N_SMALL, SMALL_SHAPE)
    res: dict[int, list[float]] = {1: [], 2: []}
    for i in range(runs):
        for n in ((1, 2) if i % 2 == 0 else (2, 1)):
            res[n].append(_shares(store, n))
    pairs = [a / b for a, b in zip(res[1], res[2])]
    return ("| processes (no dask) | 150 volumes (s) |\n|---|---|\n"
            + "\n".join(f"| {n} | {med(t):.2f} |" for n, t in res.items())
            + f"\n\n2 processes vs 1: **{med(res[1]) / med(res[2]):.2f}x**; pair by pair "
            + ", ".join(f"{r:.2f}x" for r in pairs) + f" (median {med(pairs):.2f}x). The ceiling of `inflight`: "
            "the same volumes' work (each volume as a worker task runs it: lock, skip check, build, "
            "direct write, commit) split over plain processes started together, each in its own "
            "session, with no scheduler, client or worker event loop; fresh outputs.")


def bench_overhead(work: Path, runs: int) -> str:
    store = work / "tiny.zarr"
    make_small_store(store, N_SMALL, TINY_SHAPE, modality="OT")
    res = {"plain": [], "runner1": [], "runner2": []}
    for _ in range(runs):
        for mode in res:
            res[mode].append(measure("overhead", str(store), mode)[0]["s"])
    plain, r1, r2 = (med(res[m]) for m in ("plain", "runner1", "runner2"))
    per = (r1 - plain) / N_SMALL * 1000
    return ("| what | 150 volumes (s) | per volume (ms) |\n|---|---|---|\n"
            f"| compute only (plain loop: open, stage, compute) | {plain:.2f} | {plain / N_SMALL * 1000:.1f} |\n"
            f"| runner, 1 volume in flight | {r1:.2f} | {r1 / N_SMALL * 1000:.1f} |\n"
            f"| runner, 2 in flight (threads default) | {r2:.2f} | {r2 / N_SMALL * 1000:.1f} |\n\n"
            f"Runner overhead beyond the compute: **{per:.1f} ms per volume** (target <= 50 ms).")


def bench_checksum(work: Path, runs: int) -> str:
    mhd = make_big_mhd(work / "big")
    rows = []
    for kind in ("ingest", "preprocess"):
        res = {"on": [], "off": []}
        for i in range(runs):
            for crc in (("on", "off") if i % 2 == 0 else ("off", "on")):  # neither always runs first
                store = work / f"crc-{crc}.zarr"
                if kind == "preprocess" and not store.exists():
                    measure("checksum", "ingest", str(mhd), str(store), crc)
                r, _ = measure("checksum", kind, str(mhd), str(store), crc)
                res[crc].append((r["s"], r["cpu"]))
        on, off = med(s for s, _ in res["on"]), med(s for s, _ in res["off"])
        con, coff = med(c for _, c in res["on"]), med(c for _, c in res["off"])
        rows.append(f"| {kind} | {off:.2f} | {on:.2f} | {100 * (on / off - 1):+.1f} % | {coff:.2f} | {con:.2f} "
                    f"| {100 * (con / coff - 1):+.1f} % |")
    inproc, _ = measure("checksum_inproc", str(mhd), str(work), str(max(runs, 5)))
    for kind in ("ingest", "preprocess"):
        on, off = inproc[f"{kind}-on"], inproc[f"{kind}-off"]
        w_on, w_off = med(w for w, _ in on), med(w for w, _ in off)
        c_on, c_off = med(c for _, c in on), med(c for _, c in off)
        # run i of each side ran back to back: the median of those pairs' ratios follows a
        # drifting load better than the ratio of the two medians
        w_pair = med(a[0] / b[0] for a, b in zip(on, off))
        c_pair = med(a[1] / b[1] for a, b in zip(on, off))
        rows.append(f"| {kind}, both in one process ({len(on)} alternating runs each; cost = median of the pairs' "
                    f"ratios) | {w_off:.3f} | {w_on:.3f} | {100 * (w_pair - 1):+.1f} % | {c_off:.3f} | {c_on:.3f} "
                    f"| {100 * (c_pair - 1):+.1f} % |")
    share, _ = measure("crc_share", str(mhd), str(work), str(max(runs, 5)))
    crc_ms, cpu_s = med(share["crc_s"]) * 1000, med(share["cpu_s"])
    rows.append(f"| ingest, the crc32c calls themselves ({share['calls']} chunks, {share['mb']:.0f} MB, timed call by "
                f"call) | - | crc {crc_ms:.1f} ms of {cpu_s:.2f} s CPU | +{crc_ms / 10 / cpu_s:.1f} % | - | - | - |")
    micro = [measure("crc_micro")[0] for _ in range(runs)]
    m = {k: med(x[k] for x in micro) for k in micro[0]}
    rows.append(f"| per 64^3 int16 chunk ({m['chunk_kb']:.0f} KiB compressed, {m['ratio']:.1f}x), crc where the "
                f"store computes it | encode {m['encode_ms']:.3f} ms | + crc {m['crc_write_ms']:.4f} ms "
                f"| +{100 * m['crc_write_ms'] / m['encode_ms']:.1f} % | decode {m['decode_ms']:.3f} ms "
                f"| + crc {m['crc_read_ms']:.4f} ms | +{100 * m['crc_read_ms'] / m['decode_ms']:.1f} % |")
    rows.append(f"| the same crc over chunks no longer in the CPU cache (the earlier row) | encode "
                f"{m['encode_ms']:.3f} ms | + crc {m['crc_cold_ms']:.4f} ms | +{100 * m['crc_cold_ms'] / m['encode_ms']:.1f} % "
                f"| decode {m['decode_ms']:.3f} ms | + crc {m['crc_cold_ms']:.4f} ms "
                f"| +{100 * m['crc_cold_ms'] / m['decode_ms']:.1f} % |")
    return ("| command (210 MB CT) | wall without crc32c (s) | wall with (s) | wall cost | CPU without (s) "
            "| CPU with (s) | CPU cost |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows)
            + f"\n\nTarget: <= 5 %. Medians of {runs} runs, on and off alternating (each first in turn). CPU = "
              "user + system seconds of the command's work (imports excluded): on a shared machine the steadier "
              "figure. The store computes a chunk's crc32c right after Blosc wrote it (write) or right after "
              "reading its file (read), while its bytes are in the CPU cache; google-crc32c's hardware path.")


def bench_chunkmap(work: Path, runs: int) -> str:
    mhd = make_big_mhd(work / "big")
    store = work / "crc-on.zarr"
    if not store.exists():
        measure("checksum", "ingest", str(mhd), str(store), "on")
    rs = [measure("chunkmap", str(store))[0] for _ in range(runs)]
    m = {k: med(r[k] for r in rs) for k in rs[0]}
    return ("| output | chunks | record at completion (ms) | decode on first read (ms) | bytes in the metadata |\n"
            "|---|---|---|---|---|\n"
            f"| ingested 210 MB CT, 64^3 chunks (walk of its files included) | {m['chunks']:.0f} | {m['record_ms']:.2f} "
            f"| {m['decode_ms']:.3f} | {m['map_bytes']:.0f} |\n"
            f"| synthetic grid, 1 chunk in 7 empty at random (encode only, no files) | {m['big_chunks']:.0f} "
            f"| {m['big_encode_ms']:.2f} | {m['big_decode_ms']:.2f} | {m['big_bytes']:.0f} |\n\n"
            "Reading a chunk that exists costs nothing more (the map is consulted only when a chunk file "
            "is not found).")


def bench_discovery(work: Path, runs: int) -> str:
    folder = make_dicom_folder(work / "dicom5000")
    res = {"pydicom": [], "voxelstream-serial": [], "voxelstream-threads": [],
           f"voxelstream-processes-{len(os.sched_getaffinity(0))}": []}
    for _ in range(runs):
        for mode in res:
            res[mode].append(measure("discovery", str(folder), mode)[0])
    rows = []
    for mode, rs in res.items():
        s = med(r["s"] for r in rs)
        rows.append(f"| {mode} | {rs[0]['files']} | {rs[0]['series']} | {s:.2f} | {rs[0]['files'] / s:.0f} |")
    return ("| method | files | series found | s | files/s |\n|---|---|---|---|---|\n" + "\n".join(rows)
            + "\n\npydicom: `dcmread(f, stop_before_pixels=True)` for every file (nothing grouped or checked); "
              "voxelstream: `discover([folder])` (claims, headers, series grouped, planned and checked): in one "
              "thread, on 8 threads (the default from 1000 files: overlaps reads, which dominate on network "
              "storage; here the files are in the page cache), or on N worker processes "
              "(VOXELSTREAM_DISCOVERY_WORKERS=N).")


BENCHES = {"inflight": bench_inflight, "ceiling": bench_ceiling, "overhead": bench_overhead, "checksum": bench_checksum,
           "chunkmap": bench_chunkmap, "discovery": bench_discovery}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/vs-bench-store")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default=",".join(BENCHES))
    ap.add_argument("--append", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    sections = []
    for name in args.only.split(","):
        t0 = time.perf_counter()
        body = BENCHES[name](work, args.runs)
        print(f"## {name} ({time.perf_counter() - t0:.0f} s)\n{body}\n", flush=True)
        sections.append(f"### {name}\n\n{body}")
    if args.append:
        cmd = f".venv/bin/python benchmarks/bench_store.py --runs {args.runs} --only {args.only}"
        append_results("Store and runner (issue 9): volumes in flight, overhead, checksums, discovery", cmd,
                       f"medians of {args.runs} runs, each a fresh process; shared machine",
                       "\n\n".join(sections))


if __name__ == "__main__":
    main()
