"""core helpers: printable() escapes what a terminal would act on; source_origin() records no
path unless asked; check_output_size() refuses absurd outputs with a message naming the cause."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voxelstream.limits import OutputTooLargeError, check_output_size, format_bytes, parse_bytes
from voxelstream.privacy import printable, redact_paths, salted_hash, source_origin


@pytest.mark.parametrize("raw, shown", [
    ("1.2.840.113619.2.55", "1.2.840.113619.2.55"),
    ("a\x1b[2J\x1b]0;owned\x07b", "a\\x1b[2J\\x1b]0;owned\\x07b"),
    ("line1\nline2\r", "line1\\nline2\\r".replace("\\n", "\\x0a").replace("\\r", "\\x0d")),
    ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
    ("x\x7fy\x9bz", "x\\x7fy\\x9bz"),
    ("Müller/Ωmega 東京", "Müller/Ωmega 東京"),
])
def test_printable_escapes_only_what_a_terminal_acts_on(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert all(ch.isprintable() for ch in printable(raw))


def test_redact_paths_hashes_inputs_whole_and_other_absolute_paths() -> None:
    roots = ["/data/DOE JANE"]
    text = "/data/DOE JANE/s 1/im.dcm: truncated; see /var/x/y.log for more"
    got = redact_paths(text, roots, b"k")
    assert got == (f"<path {salted_hash('/data/DOE JANE/s 1/im.dcm', b'k')}>: truncated; see "
                   f"<path {salted_hash('/var/x/y.log', b'k')}> for more")
    assert redact_paths("series 1.2.3: im.dcm: ratio 1/2", roots, b"k") == "series 1.2.3: im.dcm: ratio 1/2"


def test_salted_hash_is_hmac_sha256_of_the_text() -> None:
    salt = b"s3cret"
    expected = hmac.new(salt, b"/data/DOE^JOHN/123", hashlib.sha256).hexdigest()[:32]
    assert salted_hash("/data/DOE^JOHN/123", salt) == f"hmac-sha256:{expected}"
    assert salted_hash("/data/DOE^JOHN/123", b"other") != salted_hash("/data/DOE^JOHN/123", salt)


def test_source_origin_records_no_path_unless_kept(tmp_path: Path) -> None:
    folder = tmp_path / "DOE^JANE_MRN12345"
    folder.mkdir()
    files = []
    for k, n in enumerate((10, 20, 35)):
        f = folder / f"s{k}.dcm"
        f.write_bytes(b"x" * n)
        files.append(f)
    rec = source_origin("dicom", folder, files, salt=b"k")
    assert rec == {"reader": "dicom", "source_hash": salted_hash(str(folder), b"k"), "files": 3, "bytes": 65}
    assert "DOE" not in repr(rec) and "MRN" not in repr(rec)
    kept = source_origin("dicom", folder, files, keep_phi=True, salt=b"k")
    assert kept["source"] == str(folder)
    # relative and absolute spellings of one input hash alike
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert source_origin("dicom", folder.name, salt=b"k")["source_hash"] == rec["source_hash"]
    finally:
        os.chdir(cwd)


def test_default_salt_is_private_and_stable(tmp_path: Path) -> None:
    code = "from voxelstream.privacy import salted_hash; print(salted_hash('/x'))"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}
    env.pop("VOXELSTREAM_SALT", None)
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].startswith("hmac-sha256:")
    salt_file = tmp_path / "voxelstream" / "salt"
    assert oct(salt_file.stat().st_mode & 0o777) == "0o600" and len(bytes.fromhex(salt_file.read_text())) == 32
    env2 = {**env, "XDG_CONFIG_HOME": str(tmp_path / "other")}
    other = subprocess.run([sys.executable, "-c", code], env=env2, capture_output=True, text=True, check=True).stdout
    assert other != runs[0]


def test_output_limit_names_cause_and_size() -> None:
    # 0.01 mm from a 300 x 300 x 186 mm field of view: 30000 x 30000 x 18600 float32 voxels
    shape = (18600, 30000, 30000)
    with pytest.raises(OutputTooLargeError) as err:
        check_output_size(shape, np.float32, cause="--spacing 0.01 0.01 0.01")
    msg = str(err.value)
    nbytes = 18600 * 30000 * 30000 * 4  # 66.96 TB
    assert msg.startswith(f"--spacing 0.01 0.01 0.01 would write {nbytes / 1e12:.3g} TB") and "\n" not in msg
    assert check_output_size((512, 512, 400), np.int16, cause="x") == 512 * 512 * 400 * 2
    with pytest.raises(OutputTooLargeError, match="would write 2 kB"):
        check_output_size((1000,), np.int16, cause="x", limit="1kB")


def test_limit_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXELSTREAM_MAX_OUTPUT_BYTES", "1MiB")
    check_output_size((512, 1024), np.uint16, cause="x")  # exactly 1 MiB passes
    with pytest.raises(OutputTooLargeError):
        check_output_size((512, 1025), np.uint16, cause="x")
    monkeypatch.setenv("VOXELSTREAM_MAX_OUTPUT_BYTES", "lots")
    with pytest.raises(OutputTooLargeError, match="VOXELSTREAM_MAX_OUTPUT_BYTES: 'lots' is not a size"):
        check_output_size((1,), np.uint8, cause="x")


@pytest.mark.parametrize("text, n", [("500GB", 500 * 10**9), ("2TiB", 2 * 2**40), ("1e6", 10**6), (" 3 mb ", 3 * 10**6)])
def test_parse_bytes(text: str, n: int) -> None:
    assert parse_bytes(text) == n


def test_format_bytes() -> None:
    assert [format_bytes(v) for v in (0, 999, 1000, 6.7e12, 123.4e6)] == ["0 B", "999 B", "1 kB", "6.7 TB", "123 MB"]


def _crafted_series(folder: Path, uid: str) -> None:
    from pydicom.uid import generate_uid

    from test_dicom_support import base_dataset, place, save, set_pixels

    for k in range(2):
        ds = place(base_dataset(8, 8, series_uid=generate_uid(), bits=16), (0, 0, 2.0 * k))
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        save(set_pixels(ds, np.full((8, 8), 1000 + k, np.uint16), "ExplicitVRLittleEndian"), folder / f"{k}.dcm")
    for k in range(2):  # the uid is written byte for byte: pydicom would refuse these characters
        p = folder / f"{k}.dcm"
        raw = p.read_bytes()
        import pydicom

        old = str(pydicom.dcmread(p).SeriesInstanceUID).encode()
        old += b"\0" * (len(old) % 2)
        new = uid.encode() + b"\0" * (len(uid) % 2)
        head = b"\x20\x00\x0e\x00UI" + len(old).to_bytes(2, "little")
        assert raw.count(head + old) == 1
        p.write_bytes(raw.replace(head + old, b"\x20\x00\x0e\x00UI" + len(new).to_bytes(2, "little") + new))


def test_ingest_prints_escaped_ids_and_stores_no_path(tmp_path: Path) -> None:
    folder = tmp_path / "DOE^JANE_MRN12345_ACC777" / "series"
    folder.mkdir(parents=True)
    uid = "1.2.3\x1b[2J\x1b]0;pwned\x07.4\n5"
    _crafted_series(folder, uid)
    (folder.parent / "broken dir").mkdir()
    (folder.parent / "broken dir" / "x.dcm").write_bytes(b"not a dicom file" * 20)  # its error goes in the manifest
    store = tmp_path / "s.zarr"
    env = {**os.environ, "VOXELSTREAM_SALT": "test-salt"}
    proc = subprocess.run([sys.executable, "-m", "voxelstream.cli.main", "ingest", str(tmp_path / "DOE^JANE_MRN12345_ACC777"),
                           "--store", str(store)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("error:") == 1 and "broken dir" in proc.stderr  # the terminal shows the path
    assert "\x1b" not in proc.stdout + proc.stderr and "\x07" not in proc.stdout
    assert proc.stdout.count("\n") == 1 and printable(uid) in proc.stdout
    # nothing under the store names the folder: attributes, manifests, every file
    for f in store.rglob("*"):
        if f.is_file() and f.suffix in ("", ".json"):
            text = f.read_bytes().decode("utf-8", "replace")
            assert "DOE^JANE" not in text and "MRN12345" not in text and str(tmp_path) not in text, f
            assert "broken dir" not in text, f
    kept = tmp_path / "kept.zarr"
    proc = subprocess.run([sys.executable, "-m", "voxelstream.cli.main", "ingest", str(folder), "--store", str(kept),
                           "--keep-phi"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert any("MRN12345" in f.read_text() for f in kept.rglob("zarr.json"))


def test_preprocess_refuses_an_absurd_spacing_up_front(tmp_path: Path) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.zeros((20, 30, 30), np.int16))
    img.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(img, str(tmp_path / "scan.mhd"))
    store = tmp_path / "s.zarr"
    cli = [sys.executable, "-m", "voxelstream.cli.main"]
    subprocess.run([*cli, "ingest", str(tmp_path / "scan.mhd"), "--store", str(store)], check=True,
                   capture_output=True, timeout=300)
    proc = subprocess.run([*cli, "ct", "preprocess", "--store", str(store), "--spacing", "0.001", "0.001", "0.001"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    # 40 x 24 x 24 mm at 0.001 mm: 40000 x 24000 x 24000 float32 voxels = 92.2 TB
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: scan: spacing 0.001 0.001 0.001 mm would write {40000 * 24000 * 24000 * 4 / 1e12:.3g} TB "
                      "(shape 1x40000x24000x24000 float32); the limit is 1.1 TB: choose a coarser spacing, or raise "
                      "the limit (VOXELSTREAM_MAX_OUTPUT_BYTES=SIZE)"]
