"""The per-volume runner behind ingest, run and task commands: skipping by parameters and
input fingerprints, modality filtering, failure isolation, volumes in flight, manifests."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk

import voxelstream as vs
from voxelstream.ingest import ingest
from voxelstream.pipeline import StageCall, run_pipeline
from voxelstream.runner import Accepts, VolumeJob, run_per_volume, stored_jobs
from voxelstream.testing import sample_volume


def _mhd(path, seed, shape=(12, 14, 10)):
    arr = np.random.default_rng(seed).integers(-1000, 1000, shape).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.7, 2.0))
    sitk.WriteImage(img, str(path))
    return arr


def _lines(buf: io.StringIO) -> list[str]:
    return buf.getvalue().strip().splitlines()


SMOOTH = [StageCall("gaussian", {"sigma": 1.0})]


def test_rerun_skips_unchanged_and_redoes_a_changed_input_and_what_derives_from_it(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(3):
        _mhd(scans / f"s{i}.mhd", i)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    assert ingest([str(scans)], store, chunks=8, out=io.StringIO()).exit_code == 0
    assert run_pipeline(store, SMOOTH, output="smooth", chunks=8, out=io.StringIO()).exit_code == 0
    tokens = {v: store.completion_token(v, "smooth") for v in store.volume_ids()}

    out = io.StringIO()
    ingest([str(scans)], store, chunks=8, out=out)
    assert all(line.endswith("(already stored)") for line in _lines(out)) and len(_lines(out)) == 3
    out = io.StringIO()
    run_pipeline(store, SMOOTH, output="smooth", chunks=8, out=out)
    assert sum("(already done)" in line for line in _lines(out)) == 3

    time.sleep(0.01)  # a new modification time even on coarse clocks
    changed = _mhd(scans / "s1.mhd", 99)  # the scan is rewritten: same name, new content
    out = io.StringIO()
    ingest([str(scans)], store, chunks=8, out=out)
    assert sorted(line.split("\t")[0] for line in _lines(out) if "already" not in line) == ["s1"]
    np.testing.assert_array_equal(store.open("s1").data.compute()[0], changed)
    out = io.StringIO()
    run_pipeline(store, SMOOTH, output="smooth", chunks=8, out=out)
    redone = [line for line in _lines(out) if "already" not in line]
    assert len(redone) == 1 and "s1" in redone[0]
    assert store.completion_token("s1", "smooth") != tokens["s1"]
    assert store.completion_token("s0", "smooth") == tokens["s0"]
    # the derived output is the stage applied to the new input (reference: the stage in memory)
    ref = vs.get_stage("gaussian")(vs.Volume.from_array(changed.astype(np.int16), spacing=(2.0, 0.7, 0.8)), sigma=1.0)
    np.testing.assert_array_equal(store.open("s1", "smooth").data.compute(), ref.data.compute())

    out = io.StringIO()  # --force still forces
    run_pipeline(store, SMOOTH, output="smooth", chunks=8, force=True, out=out)
    assert not any("already" in line for line in _lines(out))


def test_a_slice_added_to_a_series_folder_changes_its_fingerprint(tmp_path):
    from voxelstream.ingest import source_fingerprint
    from voxelstream.specs import Source

    folder = tmp_path / "series"
    folder.mkdir()
    (folder / "1.dcm").write_bytes(b"x" * 10)
    src = Source("uid", str(folder), open=lambda: None)
    before = source_fingerprint(src)
    assert source_fingerprint(src) == before
    (folder / "2.dcm").write_bytes(b"y" * 10)
    assert source_fingerprint(src) != before


def _photo_and_ct_store(tmp_path) -> vs.Store:
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    rgb = np.random.default_rng(0).integers(0, 255, (20, 24, 3)).astype(np.uint8)
    store.write(vs.Volume.from_array(rgb, channel_axis=-1, units="pixel", meta={"modality": "XC"}), "photo")
    ct = sample_volume((10, 12, 14))
    store.write(ct.replace(meta={**ct.meta, "modality": "CT"}), "ct")
    store.write(ct.replace(meta={"id": "mhd"}), "mhd")  # unknown modality, 3-D in mm: fits CT
    flat = vs.Volume.from_array(np.zeros((8, 9), np.int16), units="pixel")  # unknown, 2-D pixels: does not
    store.write(flat, "flat")
    return store


def test_a_task_acts_only_on_its_modality_and_notes_the_others(tmp_path):
    store = _photo_and_ct_store(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    report = run_pipeline(store, SMOOTH, output="smooth", chunks=8, out=out, err=err,
                          accepts=Accepts("CT", spatial_ndim=3, units="mm"))
    assert report.exit_code == 0
    assert sorted(store.volume_ids("smooth")) == ["ct", "mhd"]
    notes = [line for line in _lines(err) if line.startswith("note:")]
    assert len(notes) == 2
    assert any(n.startswith("note: photo:") and "XC" in n for n in notes)
    assert any(n.startswith("note: flat:") for n in notes)
    # a task reading an output photographs never get is not an error for them either
    out, err = io.StringIO(), io.StringIO()
    report = run_pipeline(store, SMOOTH, input="smooth", output="smoother", chunks=8, out=out, err=err,
                          accepts=Accepts("CT", spatial_ndim=3, units="mm"))
    assert report.exit_code == 0 and sorted(store.volume_ids("smoother")) == ["ct", "mhd"]
    assert len([line for line in _lines(err) if line.startswith("note:")]) == 2


def test_ct_preprocess_command_skips_a_photograph(tmp_path, capsys):
    from voxelstream.cli.main import main

    store = _photo_and_ct_store(tmp_path)
    assert main(["ct", "preprocess", "--store", str(store.path), "--chunks", "8"]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("note: photo:")]
    assert "photo" not in store.volume_ids("iso") and "flat" not in store.volume_ids("iso")
    assert {"ct", "mhd"} <= set(store.volume_ids("iso"))


def test_one_damaged_or_missing_input_fails_that_volume_only(tmp_path):
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    for vid in ("a", "b", "c", "d"):
        store.write(sample_volume((8, 9, 10), seed=ord(vid)), vid, chunks=8)
    (store.path / "volumes/b/image/zarr.json").write_text("{ not json")
    doc = json.loads((store.path / "volumes/c/image/zarr.json").read_text())
    doc["attributes"]["voxelstream"]["complete"] = "yes"  # a marker of the wrong type
    (store.path / "volumes/c/image/zarr.json").write_text(json.dumps(doc))
    store.delete("d", "image")
    out, err = io.StringIO(), io.StringIO()
    report = run_pipeline(store, SMOOTH, output="smooth", chunks=8, out=out, err=err)
    assert report.exit_code == 1
    errors = {line.split(":")[1].strip(): line for line in _lines(err) if line.startswith("error:")}
    assert sorted(errors) == ["b", "c", "d"]
    assert "damaged" in errors["b"] and "completion marker" in errors["c"] and "no 'image'" in errors["d"]
    assert store.volume_ids("smooth") == ["a"]


def test_volumes_are_in_flight_together_and_lines_name_each_volume(tmp_path):
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    for i in range(4):
        store.write(sample_volume((6, 6, 6), seed=i), f"v{i}", chunks=8)
    live, peak, lock = [0], [0], threading.Lock()

    def slow(vid: str) -> vs.Volume:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.3)
        with lock:
            live[0] -= 1
        return store.open(vid)

    jobs = stored_jobs(store, "image", slow)
    out = io.StringIO()
    report = run_per_volume(store, jobs, output="copy", command="test", params={}, in_flight=3, out=out)
    assert report.exit_code == 0 and peak[0] == 3
    assert sorted(line.split("\t")[0].split()[-1] for line in _lines(out)) == ["v0", "v1", "v2", "v3"]
    report = run_per_volume(store, stored_jobs(store, "image", slow), output="copy2", command="test",
                            params={}, in_flight=1, out=io.StringIO())
    assert peak[0] == 3 and report.exit_code == 0  # in_flight=1: never two at once (peak unchanged)


def test_stored_jobs_are_read_as_the_run_reaches_them_so_the_first_volume_starts_at_once(tmp_path):
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    for i in range(6):
        store.write(sample_volume((6, 6, 6), seed=i), f"v{i}", chunks=8)
    events = []
    read = store.output_attrs

    def output_attrs(vid, name="image"):
        if name == "image":
            events.append(f"read {vid}")
        return read(vid, name)

    store.output_attrs = output_attrs  # the store's own reads, seen from outside

    def build(vid):
        events.append(f"build {vid}")
        return store.open(vid)

    jobs = stored_jobs(store, "image", build)
    assert len(jobs) == 6 and not [e for e in events if e.startswith("read")]  # counted, none read yet
    report = run_per_volume(store, jobs, output="copy", command="test", params={}, in_flight=1, out=io.StringIO())
    assert report.exit_code == 0 and store.volume_ids("copy") == [f"v{i}" for i in range(6)]
    assert events.index("build v0") < events.index("read v5"), events  # the first volume ran before the last was read
    # a Sequence: each job made once, whatever way it is reached
    assert jobs[-1] is jobs[5] and jobs[1:3] == [jobs[1], jobs[2]] and [j.volume_id for j in jobs] == store.volume_ids()
    with pytest.raises(IndexError):
        jobs[6]


def test_stored_jobs_never_end_early_without_a_word():
    from voxelstream.runner import StoredJobs

    def make(vid):
        if vid == "b":
            raise IndexError("a bug in make")  # Sequence's default iteration would stop here, silently
        return VolumeJob(vid)

    jobs = StoredJobs(["a", "b", "c"], make)
    with pytest.raises(IndexError, match="a bug in make"):
        list(jobs)


def test_an_unexpected_error_reading_one_volumes_input_fails_that_volume_alone(tmp_path):
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    for i in range(3):
        store.write(sample_volume((6, 6, 6), seed=i), f"v{i}", chunks=8)
    read = store.output_attrs

    def output_attrs(vid, name="image"):
        if vid == "v1":
            raise RuntimeError("boom")  # not one of ours: a bug, or a library's error
        return read(vid, name)

    store.output_attrs = output_attrs
    err = io.StringIO()
    report = run_per_volume(store, stored_jobs(store, "image", store.open), output="copy", command="test",
                            params={}, out=io.StringIO(), err=err)
    assert report.exit_code == 1
    assert err.getvalue().startswith("error: v1: unexpected error (RuntimeError: boom)"), err.getvalue()
    assert [vid for vid in ("v0", "v2") if read(vid, "copy").get("complete")] == ["v0", "v2"]
    assert len(list((store.path / "runs").iterdir())) == 1  # the run's manifest, written


def test_every_run_writes_a_manifest_atomically(tmp_path):
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(sample_volume((6, 6, 6)), "v", chunks=8)
    run_per_volume(store, [VolumeJob("v", build=lambda: store.open("v")), VolumeJob("x", error="broken")],
                   output="o", command="test", params={"k": 1}, out=io.StringIO(), err=io.StringIO())
    (manifest,) = (store.path / "runs").iterdir()
    rec = json.loads(manifest.read_text())
    assert [(i["item"], i["status"]) for i in rec["items"]] == [("x", "failed"), ("v", "done")]
    assert not [p for p in (store.path / "runs").iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a private mount namespace (root)")
@pytest.mark.parametrize("mount", ["ro", "full"])
def test_read_only_or_full_store_gives_one_line_errors(tmp_path, mount):
    """Real conditions: the store on a read-only bind mount, or on a 256 KiB tmpfs."""
    import subprocess
    import sys

    scans = tmp_path / "scans"
    scans.mkdir()
    _mhd(scans / "big.mhd", 0, shape=(64, 64, 64))  # 512 KiB: does not fit the tmpfs
    store = tmp_path / "s.zarr"
    store.mkdir()
    if mount == "ro":
        vs.open_store(store, create=True)
        setup = f"mount --bind {store} {store} && mount -o remount,bind,ro {store}"
    else:
        setup = f"mount -t tmpfs -o size=256k tmpfs {store}"
    cmd = (f"{setup} && {sys.executable} -m voxelstream.cli.main ingest {scans} --store {store} --chunks 64"
           " --no-progress")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    if "Operation not permitted" in proc.stderr or "permission denied" in proc.stderr.lower():
        pytest.skip(f"cannot mount here: {proc.stderr.strip()}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and all(len(e) < 400 for e in errors)
    assert any(("read-only" in e) if mount == "ro" else ("No space left" in e or "full" in e) for e in errors)


def test_detect_after_an_interrupted_infer_names_the_scans_without_a_map(tmp_path, capsys):
    from voxelstream.cli.main import main

    store = vs.open_store(tmp_path / "s.zarr", create=True)
    for vid in ("a", "b"):
        ct = sample_volume((12, 12, 12), seed=ord(vid))
        store.write(ct.replace(meta={**ct.meta, "modality": "CT"}), vid, "iso", chunks=8)
    prob = sample_volume((10, 10, 10), spacing=(4.0, 4.0, 4.0), dtype=np.float32)
    store.write(prob.replace(data=(prob.data - prob.data.min()) / 1000), "a", "prob", chunks=8)
    # "b" has no map: its infer was interrupted (staged outputs never appear half-written)
    code = main(["nodules", "detect", "--store", str(store.path), "--out", str(tmp_path / "d.csv"),
                 "--threshold", "0.0"])
    err = capsys.readouterr().err
    assert code == 1
    assert [line.split(":")[1].strip() for line in err.splitlines() if line.startswith("error: b")] == ["b"]
    assert (tmp_path / "d.csv").exists()


def _dicom_slice(path, series: str, k: int) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, "1.2.3"
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 2.0 * k], [1.0, 0, 0, 0, 1.0, 0]
    ds.PixelSpacing, ds.SliceThickness, ds.InstanceNumber = [0.7, 0.7], 2.0, k + 1
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 1
    ds.PixelData = np.full((8, 8), k, np.int16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_a_series_that_gains_a_slice_is_ingested_again_and_its_neighbour_is_not(tmp_path):
    """Two DICOM series in one folder; after ingest a slice is added to one of them."""
    folder = tmp_path / "dicom"
    folder.mkdir()
    for series in ("1.2.3.1", "1.2.3.2"):
        for k in range(4):
            _dicom_slice(folder / f"{series}-{k}.dcm", series, k)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    out = io.StringIO()
    assert ingest([str(folder)], store, out=out).exit_code == 0
    assert sorted(_lines(out)) == ["1.2.3.1\t1x4x8x8", "1.2.3.2\t1x4x8x8"]
    _dicom_slice(folder / "1.2.3.1-4.dcm", "1.2.3.1", 4)
    out = io.StringIO()
    assert ingest([str(folder)], store, out=out).exit_code == 0
    assert sorted(_lines(out)) == ["1.2.3.1\t1x5x8x8", "1.2.3.2\t(already stored)"]
    np.testing.assert_array_equal(store.open("1.2.3.1").data.compute()[0, :, 0, 0], [0, 1, 2, 3, 4])
