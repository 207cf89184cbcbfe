"""Synthetic chest-CT phantoms for tests, the demo and benchmarks (LUNA16-style task).

This module is the public facade; the work is done, one job per module, in

* ``phantom_types``: the value types (:class:`Phantom`, :class:`Nodule`, HU range);
* ``phantom_geometry``: index <-> world mapping (ITK/DICOM LPS mm) and partial-volume ramps;
* ``phantom_anatomy``: body, ribs, spine, trachea, heart and textured lungs;
* ``phantom_structures``: vessel trees, nodules and distractors (growth, placement, stamping);
* ``phantom_findings``: the LUNA16-like nodule mix (sizes, ground-glass and part-solid
  textures, juxtapleural and vessel-attached placement, partial-volume edges);
* ``phantom_render``: :func:`make_ct_phantom`, the volume rendered slab by slab;
* ``phantom_dicom``: :func:`write_dicom_series` (pydicom), with dummy identifying values;
* ``phantom_datasets``: :func:`generate_dataset`, scans plus LUNA16-style annotation CSVs.

Everything is deterministic for a given seed and needs only numpy, scipy and pydicom
(SimpleITK is imported lazily, and only to write MetaImage files).
"""

from __future__ import annotations

from .phantom_datasets import generate_dataset
from .phantom_dicom import PHI_DUMMIES, write_dicom_series
from .phantom_findings import LUNA16_DIAMETER_QUANTILES, NoduleMix, diameter_cdf, sample_diameters
from .phantom_render import make_ct_phantom
from .phantom_types import HU_MAX, HU_MIN, Nodule, Phantom

__all__ = [
    "HU_MAX",
    "HU_MIN",
    "LUNA16_DIAMETER_QUANTILES",
    "NoduleMix",
    "Nodule",
    "PHI_DUMMIES",
    "Phantom",
    "diameter_cdf",
    "generate_dataset",
    "make_ct_phantom",
    "sample_diameters",
    "write_dicom_series",
]
