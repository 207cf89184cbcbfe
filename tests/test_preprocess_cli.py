"""``voxelstream ct preprocess`` and the same work as ``voxelstream run examples/preprocess.toml``."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import zarr

import voxelstream as vs
from voxelstream import geometry
from voxelstream.cli.main import main
from voxelstream.pipeline import load_pipeline
from voxelstream_ct.phantom import make_ct_phantom

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "preprocess.toml"


@pytest.fixture()
def store(tmp_path) -> vs.Store:
    """Two phantoms of different size and spacing; one with an oblique direction."""
    path = tmp_path / "data.zarr"
    q, _ = np.linalg.qr(np.array([[1.0, 0.2, 0.0], [-0.2, 1.0, 0.1], [0.0, -0.1, 1.0]]))
    for vid, shape, spacing, direction, seed in (
        ("scan-a", (23, 61, 53), (2.5, 0.7, 0.8), None, 1),
        ("scan-b", (29, 64, 59), (1.25, 0.9, 0.9), q * np.sign(np.diag(q)), 2),
    ):
        ph = make_ct_phantom(shape, spacing, seed=seed, n_nodules=1, n_distractors=0, direction=direction)
        vol = vs.Volume.from_itk_geometry(ph.hu, spacing=ph.spacing, origin_xyz=ph.origin_xyz,
                                          direction=np.asarray(ph.direction).ravel(), meta={"modality": "CT"})
        vol.to_zarr(path, vid, chunks=16)
    return vs.open_store(path)


def _sitk_then_window(vol: vs.Volume, out: vs.Volume, lo: float, hi: float) -> np.ndarray:
    """The independent reference: SimpleITK linear resampling, then the window formula."""
    img = sitk.GetImageFromArray(np.asarray(vol.data[0]))
    o, s, d = geometry.affine_to_itk(vol.affine)
    img.SetOrigin(o), img.SetSpacing(s), img.SetDirection(d)
    o, s, d = geometry.affine_to_itk(out.affine)
    res = sitk.Resample(img, out.spatial_shape[::-1], sitk.Transform(), sitk.sitkLinear, o, s, d, -5000.0, sitk.sitkFloat64)
    hu = sitk.GetArrayFromImage(res)
    return np.where(hu == -5000.0, np.nan, (np.clip(hu, lo, hi) - lo) / (hi - lo))


def test_preprocess_writes_iso_equal_to_simpleitk_and_windowed(store, capsys):
    assert main(["ct", "preprocess", "--store", str(store.path), "--chunks", "32"]) == 0
    for vid in ("scan-a", "scan-b"):
        src, iso = store.open(vid, "image"), store.open(vid, "iso")
        assert iso.spacing == pytest.approx((1.0, 1.0, 1.0))
        np.testing.assert_allclose(iso.affine[:3, 3], src.affine[:3, 3])
        expected_shape = tuple(int(np.floor(n * s + 0.5)) for n, s in zip(src.spatial_shape, src.spacing))
        assert iso.spatial_shape == expected_shape and iso.channels == 1
        ref = _sitk_then_window(src, iso, -1000, 400)
        got = iso.data.compute()[0]
        inside = ~np.isnan(ref)
        assert inside.mean() > 0.9
        np.testing.assert_allclose(got[inside], ref[inside], atol=1e-3 / 1400 + 1e-6)
        assert got.dtype == np.float32 and got.min() >= 0 and got.max() <= 1
    assert "[2/2] scan-b" in capsys.readouterr().out


def test_output_is_ome_zarr_with_scale_translation_provenance_and_aligned_chunks(store):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    assert main(["ct", "preprocess", "--store", str(store.path), "--spacing", "2", "1.5", "1.5", "--preset", "bone",
                 "--chunks", "16"]) == 0
    node = next(iter(Reader(parse_url(str(store.path / store.image_path("scan-a", "iso"))))()))
    (scale, trans), = node.metadata["coordinateTransformations"]
    src = store.open("scan-a")
    assert scale["scale"] == pytest.approx([1.0, 2.0, 1.5, 1.5])  # c, z, y, x
    assert trans["translation"] == pytest.approx([0.0, *src.origin])  # the origin in array order
    attrs = store.attrs("scan-a", "iso")
    stages = [h["stage"] for h in attrs["provenance"]["history"]]
    assert stages[-2:] == ["resample", "hu_window"]
    assert attrs["provenance"]["history"][-1]["params"]["preset"] == "bone"
    assert {h["plugin"] for h in attrs["provenance"]["history"][-2:]} == {"resample", "ct"}
    arr = zarr.open_array(store=str(store.path), path=store.image_path("scan-a", "iso") + "/0", mode="r")
    assert arr.chunks == (1, 16, 16, 16)


def test_rerun_skips_done_volumes_and_new_parameters_recompute(store, capsys):
    args = ["ct", "preprocess", "--store", str(store.path), "--chunks", "32"]
    assert main(args) == 0
    first = store.attrs("scan-a", "iso")["token"]
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("(already done)") == 2
    assert store.attrs("scan-a", "iso")["token"] == first
    assert main(args + ["--window", "-160", "240"]) == 0
    assert "(already done)" not in capsys.readouterr().out
    assert store.attrs("scan-a", "iso")["token"] != first
    np.testing.assert_array_equal(
        store.open("scan-a", "iso").data.compute(),
        vs.get_stage("hu_window")(vs.get_stage("resample")(store.open("scan-a"), chunks=32), preset="mediastinum").data.compute(),
    )


def test_example_pipeline_does_the_same_work_as_the_command(store, tmp_path, capsys):
    pipe = load_pipeline(EXAMPLE)
    assert [c.name for c in pipe.stages] == ["resample", "hu_window"]
    toml = tmp_path / "preprocess.toml"
    toml.write_text(EXAMPLE.read_text().replace('store = "../data.zarr"', f'store = "{store.path}"'))
    assert main(["run", str(toml)]) == 0
    by_pipeline = store.open("scan-b", "iso").data.compute()
    capsys.readouterr()
    # same parameters: the command finds the work done ...
    assert main(["ct", "preprocess", "--store", str(store.path)]) == 0
    assert capsys.readouterr().out.count("(already done)") == 2
    # ... and forced, it writes the very same voxels
    assert main(["ct", "preprocess", "--store", str(store.path), "--force"]) == 0
    np.testing.assert_array_equal(store.open("scan-b", "iso").data.compute(), by_pipeline)


def test_missing_store_is_a_one_line_error(tmp_path, capsys):
    assert main(["ct", "preprocess", "--store", str(tmp_path / "nope.zarr")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_phantoms_command_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "scans"
    assert main(["ct", "phantoms", "--out", str(out), "--n", "1", "--format", "mhd", "--seed", "5"]) == 0
    assert len(list(out.glob("*.mhd"))) == 1
    rows = (out / "annotations.csv").read_text().splitlines()
    assert rows[0].startswith("seriesuid") and len(rows) >= 2
    assert "written to" in capsys.readouterr().out
