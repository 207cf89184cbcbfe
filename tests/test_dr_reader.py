"""The ``photo`` reader: JPEG/PNG photographs as lazy (3, H, W) uint8 volumes, against
Pillow's own decoding; bad files reported in one line while the batch goes on."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import voxelstream
from voxelstream.ingest import ingest
from voxelstream.specs import Source, SourceError
from voxelstream_dr.reader import PhotoError, discover, open_photo


def _photo(h=30, w=40, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_and_jpeg_read_as_pillow_decodes_them(tmp_path):
    arr = _photo()
    Image.fromarray(arr).save(tmp_path / "10_left.png")
    Image.fromarray(arr).save(tmp_path / "10_right.JPG", quality=90)
    png = voxelstream.read(tmp_path / "10_left.png")
    assert png.shape == (3, 30, 40) and png.data.dtype == np.uint8 and png.axes == ("y", "x")
    assert png.units == ("pixel", "pixel") and png.meta["modality"] == "OP"
    np.testing.assert_array_equal(png.data.compute(), arr.transpose(2, 0, 1))
    jpg = voxelstream.read(tmp_path / "10_right.JPG")
    expected = np.asarray(Image.open(tmp_path / "10_right.JPG").convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(jpg.data.compute(), expected)
    ids = sorted(s.volume_id for s in discover([tmp_path / "10_left.png", tmp_path / "10_right.JPG"]))
    assert ids == ["10_left", "10_right"]


def test_pixels_are_decoded_only_when_computed(tmp_path):
    path = tmp_path / "a.jpeg"
    Image.fromarray(_photo()).save(path)
    vol = open_photo(str(path))  # header read now
    good = path.read_bytes()
    path.write_bytes(good[:200] + b"\x00" * (len(good) - 202) + good[-2:])  # same size, pixels broken
    with pytest.raises(PhotoError):
        vol.data.compute()


@pytest.mark.parametrize("mode, note", [("L", "grey"), ("P", "palette"), ("RGBA", "RGBA")])
def test_other_modes_become_rgb_with_a_note(tmp_path, mode, note):
    rgb = Image.fromarray(_photo())
    img = rgb.convert(mode)
    img.save(tmp_path / "x.png")
    vol = open_photo(str(tmp_path / "x.png"))
    assert note in vol.meta["note"] and vol.shape == (3, 30, 40)
    np.testing.assert_array_equal(vol.data.compute(), np.asarray(img.convert("RGB")).transpose(2, 0, 1))


def _bad_files(folder):
    buf = io.BytesIO()
    Image.fromarray(_photo(60, 80)).save(buf, format="JPEG")
    (folder / "cut.jpeg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "text.jpg").write_text("not an image at all\n")
    Image.fromarray(_photo()).save(folder / "really_a.gif", format="GIF")
    (folder / "really_a.gif").rename(folder / "gif.png")


def test_bad_files_are_one_line_source_errors(tmp_path):
    _bad_files(tmp_path)
    Image.fromarray(_photo()).save(tmp_path / "good.png")
    found = {item.location.rsplit("/", 1)[-1]: item for item in discover(sorted(tmp_path.iterdir()))}
    assert isinstance(found["good.png"], Source)
    for name, words in (("cut.jpeg", "truncated"), ("text.jpg", "not a JPEG or PNG"), ("gif.png", "GIF")):
        err = found[name]
        assert isinstance(err, SourceError) and words in err.reason and "\n" not in err.reason


def test_ingest_stores_the_good_photos_and_reports_the_bad(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    _bad_files(photos)
    for i in range(2):
        Image.fromarray(_photo(seed=i)).save(photos / f"{i}_left.png")
    store = voxelstream.open_store(tmp_path / "s.zarr", create=True)
    report = ingest([str(photos)], store)
    assert report.exit_code == 1 and len(report.failed) == 3
    assert store.volume_ids(name="image") == ["0_left", "1_left"]
    np.testing.assert_array_equal(store.read_region("1_left", "image", (slice(None),) * 3),
                                  _photo(seed=1).transpose(2, 0, 1))
    err = capsys.readouterr().err
    assert err.count("error: ") == 3 and "truncated" in err


def test_computed_pixels_are_the_callers_own(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    vol = open_photo(str(tmp_path / "a.png"))
    first = vol.data.compute()
    first[:] = 0  # writable, and changing it changes nothing for the next reader
    np.testing.assert_array_equal(vol.data.compute(), _photo().transpose(2, 0, 1))
