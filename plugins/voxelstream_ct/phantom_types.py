"""The phantom's public value types: a rendered volume and its findings (LPS mm)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["HU_MAX", "HU_MIN", "Nodule", "Phantom"]

HU_MIN = -1024
HU_MAX = 3071


@dataclass(frozen=True)
class Nodule:
    """A spherical finding in world LPS millimetres.

    ``kind`` is ``"nodule"`` for annotated nodules; distractors use ``"calcification"``
    (bright calcified granuloma) or ``"vessel"`` (vessel crossing / blob).

    Nodules also say how they look, as radiologists classify them (LUNA16's tables do not
    carry this; the phantom's own ``phantom_findings.csv`` does):

    * ``texture``: ``"solid"`` (soft tissue, 30-60 HU), ``"ground-glass"`` (hazy,
      -600..-300 HU, fuzzy edge) or ``"part-solid"`` (ground glass around a solid core);
    * ``attachment``: ``"isolated"`` (lung all around), ``"juxtapleural"`` (touching the
      pleura, partly merged with the chest wall) or ``"vessel"`` (a vessel runs into it).
    """

    center_xyz: tuple[float, float, float]
    diameter_mm: float
    kind: str = "nodule"
    texture: str = "solid"
    attachment: str = "isolated"


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic CT volume with its geometry and ground truth.

    ``hu`` is int16 with axes ``(z, y, x)``; ``spacing`` is ``(z, y, x)`` in mm;
    ``origin_xyz`` is the world (LPS) position of voxel index (0, 0, 0); ``direction`` is
    the ITK direction matrix (columns = world directions of the x, y, z index axes).
    ``lung`` is the anatomical lung region (bool, same shape as ``hu``): voxels at least half
    inside the lungs' analytic shape, vessels and nodules within it included, trachea not
    -- the ground truth for lung segmentation.
    """

    hu: NDArray[np.int16]
    spacing: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    direction: NDArray[np.float64]
    nodules: tuple[Nodule, ...]
    distractors: tuple[Nodule, ...]
    lung: NDArray[np.bool_] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    @property
    def spacing_xyz(self) -> NDArray[np.float64]:
        """Spacing in index ``(x, y, z)`` order (the ITK/SimpleITK order)."""
        return np.asarray(self.spacing[::-1], dtype=np.float64)

    @property
    def affine(self) -> NDArray[np.float64]:
        """4x4 matrix mapping an index ``(z, y, x, 1)`` to a world point ``(x, y, z, 1)``."""
        a = np.eye(4)
        m = np.asarray(self.direction) * self.spacing_xyz[None, :]  # columns: i, j, k
        a[:3, :3] = m[:, ::-1]  # columns reordered to z, y, x
        a[:3, 3] = self.origin_xyz
        return a

    def index_to_world(self, zyx: ArrayLike) -> NDArray[np.float64]:
        """Map ``(N, 3)`` (or ``(3,)``) indices in ``(z, y, x)`` order to LPS ``(x, y, z)`` mm."""
        p = np.asarray(zyx, dtype=np.float64)
        ijk = p[..., ::-1] * self.spacing_xyz
        return np.asarray(self.origin_xyz) + ijk @ np.asarray(self.direction).T

    def world_to_index(self, xyz: ArrayLike) -> NDArray[np.float64]:
        """Inverse of :meth:`index_to_world`: LPS ``(x, y, z)`` mm to float ``(z, y, x)``."""
        p = np.asarray(xyz, dtype=np.float64) - np.asarray(self.origin_xyz)
        ijk = (p @ np.asarray(self.direction)) / self.spacing_xyz
        return ijk[..., ::-1]
