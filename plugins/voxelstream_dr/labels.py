"""Grade tables and the train/validation split.

Two layouts are read: Kaggle's EyePACS ``trainLabels.csv`` (``image,level``) and APTOS 2019's
``train.csv`` (``id_code,diagnosis``); a row that is not an image id and a grade 0-4 is an
error naming the file and line. Image ids are the photographs' volume ids (file name without
extension), so a table matches a store directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxelstream.errors import ReadError
from voxelstream.tables import read_table

__all__ = ["GRADES", "LAYOUTS", "read_grades", "Matched", "match_ids", "patient_of", "split_by_patient",
           "write_split", "read_split"]

GRADES = 5
# (id column, grade column) of each accepted layout, by the name a user knows it by
LAYOUTS = {"Kaggle EyePACS": ("image", "level"), "APTOS 2019": ("id_code", "diagnosis")}
_EYE = re.compile(r"^(?P<patient>.+)_(left|right)$", re.IGNORECASE)


def _strip_ext(image: str) -> str:
    """``10_left.jpeg`` -> ``10_left``: some tables name files, the store names volumes."""
    return re.sub(r"\.(jpe?g|png|tiff?)$", "", image, flags=re.IGNORECASE)


def read_grades(path: str | Path) -> dict[str, int]:
    """``{image id: grade}`` from a Kaggle or APTOS table (header row required; extra columns
    are ignored; read by :func:`voxelstream.tables.read_table`, so UTF-8 or else Latin-1 with a
    note). Raises :class:`ReadError` ``FILE:LINE: reason`` for the first bad row."""
    table = read_table(path, "grade", LAYOUTS)
    id_name, grade_name = table.columns
    grades: dict[str, int] = {}
    for line, row in table.rows():
        image, raw = table.pick(row)
        image, where = _strip_ext(image), table.where(line)
        if not image:
            raise ReadError(f"{where}: empty {id_name}; fix or delete the row")
        if raw not in {str(g) for g in range(GRADES)}:
            raise ReadError(f"{where}: {grade_name} {raw!r} of {image!r} is not a grade 0-4; fix or delete the row")
        if image in grades:
            raise ReadError(f"{where}: {image!r} is graded twice; keep one row")
        grades[image] = int(raw)
    return grades


@dataclass(frozen=True)
class Matched:
    """Ids found on both sides, and those found on one only (sorted)."""

    both: list[str]
    only_labels: list[str]
    only_images: list[str]

    def report(self, labels_what: str = "grades", images_what: str = "photographs") -> list[str]:
        """Lines for a user about the ids that did not match (empty when all did)."""
        lines = []
        for ids, have, lack in ((self.only_labels, labels_what, images_what), (self.only_images, images_what, labels_what)):
            if ids:
                shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
                lines.append(f"{len(ids)} of the {have} have no {lack[:-1] if lack.endswith('s') else lack} ({shown}); ignored")
        return lines


def match_ids(labelled: Iterable[str], present: Iterable[str]) -> Matched:
    """Compare the ids of a grade table with those present (in a store, a prediction file)."""
    a, b = set(labelled), set(present)
    return Matched(sorted(a & b), sorted(a - b), sorted(b - a))


def patient_of(image_id: str) -> str:
    """The patient of a photograph: Kaggle's ``<patient>_left`` / ``<patient>_right`` give
    ``<patient>``; any other id is a patient of its own."""
    m = _EYE.match(image_id)
    return m.group("patient") if m else image_id


def split_by_patient(grades: Mapping[str, int], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(train ids, val ids)``, sorted: both eyes of a patient on one side, stratified by the
    patient's worst grade (each stratum gives ``round(val_fraction * n)`` patients to
    validation, at least one when it has two or more)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    patients: dict[str, list[str]] = {}
    for image in sorted(grades):
        patients.setdefault(patient_of(image), []).append(image)
    strata: dict[int, list[str]] = {}
    for patient, images in sorted(patients.items()):
        strata.setdefault(max(grades[i] for i in images), []).append(patient)
    rng = np.random.default_rng([seed, 2])
    val_patients: set[str] = set()
    for grade in sorted(strata):
        group = strata[grade]
        n = int(round(val_fraction * len(group)))
        if val_fraction > 0 and len(group) >= 2:
            n = min(max(n, 1), len(group) - 1)
        val_patients.update(group[i] for i in rng.permutation(len(group))[:n])
    train = sorted(i for p, imgs in patients.items() if p not in val_patients for i in imgs)
    val = sorted(i for p, imgs in patients.items() if p in val_patients for i in imgs)
    return train, val


def write_split(path: str | Path, train: Sequence[str], val: Sequence[str]) -> None:
    """``split.json``: ``{"train": [...], "val": [...]}``."""
    Path(path).write_text(json.dumps({"train": list(train), "val": list(val)}, indent=2))


def read_split(path: str | Path) -> tuple[list[str], list[str]]:
    """The ``(train, val)`` ids of a ``split.json``."""
    try:
        doc = json.loads(Path(path).read_text())
        return list(doc["train"]), list(doc["val"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReadError(f"{path}: not a split.json with 'train' and 'val' lists ({exc})") from None
