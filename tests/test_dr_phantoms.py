"""Synthetic fundus photographs: files, labels, determinism and what is drawn."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from voxelstream_dr.labels import patient_of, read_grades
from voxelstream_dr.phantoms import LESIONS, draw_fundus, write_phantoms


def test_write_phantoms_files_and_labels(tmp_path):
    csv = write_phantoms(tmp_path / "a", 6, seed=3, width=200)
    grades = read_grades(csv)
    assert sorted(grades) == sorted(p.stem for p in (tmp_path / "a").glob("*.jpeg"))
    assert len(grades) == 6 and all(0 <= g <= 4 for g in grades.values())
    assert {patient_of(i) for i in grades} == {"1", "2", "3"}  # left and right eye per patient
    for image_id in grades:
        with Image.open(tmp_path / "a" / f"{image_id}.jpeg") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and 180 <= im.width <= 220
    write_phantoms(tmp_path / "b", 6, seed=3, width=200)
    for f in (tmp_path / "a").iterdir():  # same seed, same bytes
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()


@pytest.mark.parametrize("grade", range(5))
def test_drawn_photo_geometry(grade):
    arr, info = draw_fundus(grade, np.random.default_rng(grade + 10), width=400)
    h, w, _ = arr.shape
    assert arr.dtype == np.uint8 and w / h == pytest.approx(4 / 3, abs=0.02)
    assert arr[0, 0].max() == 0 and arr[-1, -1].max() == 0  # black corners
    # the seed's radius rule on the middle row finds the drawn radius (within ~4 %)
    row = arr[int(round(info.centre[0])), :, :].astype(float).sum(1)
    assert (row > row.mean() / 10).sum() / 2 == pytest.approx(info.radius, rel=0.04)


def test_lesions_grow_with_grade():
    rng = np.random.default_rng(0)
    counts = np.array([[sum(draw_fundus(g, rng, width=160)[1].counts.values()) for _ in range(6)] for g in range(5)])
    assert counts[0].sum() == 0 and all(counts[g].mean() < counts[g + 1].mean() for g in (0, 1, 2))
    kinds = [{k for k in LESIONS if draw_fundus(g, np.random.default_rng(5), width=160)[1].counts[k]} for g in range(5)]
    assert "new_vessels" in kinds[4] and not any("new_vessels" in k for k in kinds[:4])


def test_bad_grade():
    with pytest.raises(ValueError, match="grade"):
        draw_fundus(5, np.random.default_rng(0))
