"""LUNA16-like datasets of phantoms: scans (DICOM series or MetaImage) plus annotation CSVs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .phantom_dicom import fingerprint, phantom_uid, write_dicom_series
from .phantom_findings import NoduleMix
from .phantom_geometry import default_origin
from .phantom_render import make_ct_phantom
from .phantom_types import Nodule

__all__ = ["generate_dataset"]

_CSV_HEADER = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]


def _write_csv(path: Path, rows: list[list[str]], header: list[str] | None) -> None:
    # LUNA16's tables use CRLF line endings; so do we (csv's default)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        w.writerows(rows)


def _row(uid: str, n: Nodule, diameter: float) -> list[str]:
    x, y, z = n.center_xyz
    return [uid, f"{x:.8f}", f"{y:.8f}", f"{z:.8f}", f"{diameter:.8f}" if diameter > 0 else "-1"]


def generate_dataset(out_dir: Path, n_scans: int = 4, *, seed: int = 0,
                     shape: tuple[int, int, int] = (96, 128, 128),
                     write_format: str = "dicom", realistic: bool = True,
                     nodules: tuple[int, int] = (1, 3)) -> Path:
    """Write a small LUNA16-like dataset of phantoms and return ``annotations.csv``'s path.

    Scan ``s`` gets ``nodules[0]..nodules[1]`` nodules (default 1-3, as in LUNA16's scans
    with nodules; a training set may ask for more per scan to see more nodules per minute of
    generation and training) and spacing y = x in [0.6, 0.9] mm. With ``realistic``
    (default) slices are 0.6-2.5 mm thick and the nodules are LUNA16-like
    (``NoduleMix()``: LUNA16's sizes in [3, 30] mm, juxtapleural and vessel-attached,
    ground-glass and part-solid, partial-volume edges); ``realistic=False`` writes the
    earlier, easy datasets (1.0-2.5 mm slices, isolated solid nodules of 4-30 mm, the same
    files as before for the same seed).
    ``write_format="dicom"``: one series per scan in ``out_dir/<PatientID>/<SeriesUID>/``
    (PatientIDs ``PH0001``...); ``"mhd"``: ``out_dir/<SeriesUID>.mhd`` (+ ``.raw``) via
    SimpleITK with the phantom's spacing, origin and direction. Also written:
    ``annotations.csv`` (``seriesuid,coordX,coordY,coordZ,diameter_mm``, one row per
    nodule), ``annotations_excluded.csv`` (distractors; ``-1`` diameter for vessel
    crossings) and ``seriesuids.csv`` (one UID per line, no header), all with CRLF endings
    like the real LUNA16 tables, and ``phantom_findings.csv`` (the annotations plus each
    nodule's ``texture`` and ``attachment``, to break results down by kind).
    """
    if not 0 <= nodules[0] <= nodules[1]:
        raise ValueError(f"nodules must be (min, max) with 0 <= min <= max, got {nodules}")
    if write_format not in ("dicom", "mhd"):
        raise ValueError("write_format must be 'dicom' or 'mhd'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xDA7A])
    ann: list[list[str]] = []
    exc: list[list[str]] = []
    uids: list[list[str]] = []
    kinds: list[list[str]] = []
    for s in range(n_scans):
        sz = float(rng.uniform(0.6, 2.5) if realistic else rng.uniform(1.0, 2.5))
        sxy = float(rng.uniform(0.6, 0.9))
        n_nod = int(rng.integers(nodules[0], nodules[1] + 1))
        ph_seed = int(rng.integers(0, 2 ** 31 - 1))
        centre = (float(rng.uniform(-20, 20)), float(rng.uniform(-40, 0)),
                  float(rng.uniform(-250, -100)))
        spacing = (sz, sxy, sxy)
        origin = default_origin(tuple(shape), spacing, np.eye(3), centre)  # type: ignore[arg-type]
        mix = {"nodule_mix": NoduleMix(), "nodule_diameters_mm": (3.0, 30.0)} if realistic else {}
        ph = make_ct_phantom(shape, spacing, seed=ph_seed, n_nodules=n_nod,
                             origin_xyz=tuple(origin), **mix)  # type: ignore[arg-type]
        pid = f"PH{s + 1:04d}"
        uid = phantom_uid("dataset-series", seed, s, pid, fingerprint(ph))
        if write_format == "dicom":
            write_dicom_series(ph, out_dir / pid / uid, series_uid=uid,
                               study_uid=phantom_uid("dataset-study", seed, s, pid),
                               patient_name=f"PHANTOM^CASE{s + 1:03d}", patient_id=pid,
                               seed=ph_seed)
        else:
            import SimpleITK as sitk

            img = sitk.GetImageFromArray(ph.hu)
            img.SetSpacing([float(v) for v in ph.spacing[::-1]])
            img.SetOrigin([float(v) for v in ph.origin_xyz])
            img.SetDirection([float(v) for v in np.asarray(ph.direction).ravel()])
            sitk.WriteImage(img, str(out_dir / f"{uid}.mhd"))
        uids.append([uid])
        ann += [_row(uid, n, n.diameter_mm) for n in ph.nodules]
        kinds += [_row(uid, n, n.diameter_mm) + [n.texture, n.attachment] for n in ph.nodules]
        exc += [_row(uid, d, d.diameter_mm if d.kind == "calcification" else -1.0)
                for d in ph.distractors]
    _write_csv(out_dir / "annotations.csv", ann, _CSV_HEADER)
    _write_csv(out_dir / "annotations_excluded.csv", exc, _CSV_HEADER)
    _write_csv(out_dir / "seriesuids.csv", uids, None)
    _write_csv(out_dir / "phantom_findings.csv", kinds, _CSV_HEADER + ["texture", "attachment"])
    return out_dir / "annotations.csv"
