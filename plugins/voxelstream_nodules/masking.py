"""Where the task looks: a stored mask (the lungs) restricts negatives, mining and detections.

``voxelstream ct preprocess --lung-mask --lung-margin MM`` writes the lungs grown by ``MM``
as the output ``lung`` (``voxelstream_ct.outputs.LUNG_MASK_OUTPUT``) on the grid of ``iso``.
Random negatives drawn only there are parenchyma, vessels, fissures and pleura -- what a
nodule detector has to tell nodules from -- instead of mostly muscle, fat, bone and the
mediastinum, which the classifier learns to reject from a few examples; mined hard negatives
and reported detections outside it are marks no LUNA16 nodule can explain. The margin keeps
juxtapleural nodules (which bulge into the wall) and their surroundings inside.

Only the mask values at the points asked for are read (``dask`` ``vindex``), never the whole
mask.
"""

from __future__ import annotations

import numpy as np

from voxelstream.errors import VoxelstreamError
from voxelstream.store import Store

__all__ = ["MaskError", "require_mask", "values_at_index", "mask_at_index", "mask_at_world"]


class MaskError(VoxelstreamError):
    """A mask output asked for is missing or incomplete."""


def require_mask(store: Store, volume_id: str, name: str) -> None:
    """Raise :class:`MaskError` (one line, with the fix) unless ``name`` is complete."""
    if not store.is_complete(volume_id, name):
        raise MaskError(f"{store.path}: volume {volume_id!r} has no complete {name!r} mask; run "
                        f"'voxelstream ct preprocess --lung-mask --lung-margin 10' (or drop the mask option)")


def values_at_index(store: Store, volume_id: str, name: str, index_zyx: np.ndarray, outside: float = 0.0
                    ) -> np.ndarray:
    """Channel 0 of the stored output ``name`` at the integer voxel indices ``(n, 3)``
    (float64; ``outside`` past the volume's border)."""
    data = store.open(volume_id, name).data[0]
    idx = np.asarray(index_zyx, dtype=np.int64).reshape(-1, 3)
    inside = np.all((idx >= 0) & (idx < np.asarray(data.shape)), axis=1)
    out = np.full(len(idx), float(outside))
    if inside.any():
        out[inside] = np.asarray(data.vindex[tuple(idx[inside].T)].compute(), dtype=np.float64)
    return out


def mask_at_index(store: Store, volume_id: str, name: str, index_zyx: np.ndarray) -> np.ndarray:
    """True where the mask ``name`` is nonzero at the integer voxel indices ``(n, 3)`` of its
    grid (False outside the volume)."""
    require_mask(store, volume_id, name)
    return values_at_index(store, volume_id, name, index_zyx) != 0


def mask_at_world(store: Store, volume_id: str, name: str, world_xyz: np.ndarray) -> np.ndarray:
    """:func:`mask_at_index` at world points ``(n, 3)`` (LPS mm), each at its nearest voxel."""
    require_mask(store, volume_id, name)
    vol = store.open(volume_id, name)
    pts = np.asarray(world_xyz, dtype=float).reshape(-1, 3)
    if not len(pts):
        return np.zeros(0, dtype=bool)
    idx = np.rint(vol.world_to_index(pts)).astype(np.int64).reshape(-1, 3)
    return mask_at_index(store, volume_id, name, idx)
