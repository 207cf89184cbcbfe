"""Shared helpers for the nodule tests (no tests here): small windowed CT-like phantoms built
directly as Volumes, and an independent SimpleITK/numpy cube cutter to check against."""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
import SimpleITK as sitk

import voxelstream
from voxelstream import Volume

# a rotated, anisotropic geometry so that index <-> world is not a mere scaling
TILTED = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # ITK direction


def phantom_volume(
    seed: int,
    nodules_world: Sequence[tuple[Sequence[float], float]],
    *,
    shape: Sequence[int] = (40, 64, 64),
    spacing: Sequence[float] = (2.0, 1.0, 1.0),
    origin: Sequence[float] = (-20.0, 30.0, -100.0),
    direction: np.ndarray = TILTED,
    chunks: int = 16,
    series_uid: str = "",
) -> Volume:
    """A windowed ([0, 1]) chest-like phantom: air 0, body 0.7, two lungs ~0.1, noise, and
    bright spheres (value 0.75) at ``nodules_world`` = [((x, y, z) mm, diameter mm), ...]."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    ny, nx = shape[1], shape[2]
    body = ((y - ny / 2) / (0.45 * ny)) ** 2 + ((x - nx / 2) / (0.47 * nx)) ** 2 <= 1
    lung = (((y - ny / 2) / (0.3 * ny)) ** 2 + ((np.abs(x - nx / 2) - 0.22 * nx) / (0.15 * nx)) ** 2) <= 1
    img = np.where(body, 0.7, 0.0) - np.where(lung, 0.6, 0.0)
    vol = Volume.from_itk_geometry(np.zeros(shape, np.float32), spacing=spacing, origin_xyz=origin, direction=direction)
    grid = np.stack([z, y, x], axis=-1).reshape(-1, 3)
    world = vol.index_to_world(grid).reshape(*shape, 3)
    for centre, diameter in nodules_world:
        inside = np.linalg.norm(world - np.asarray(centre), axis=-1) <= diameter / 2
        img[inside] = 0.75
    img = img + rng.normal(0, 0.02, size=img.shape) * (img > 0)
    img = np.clip(img, 0, 1).astype(np.float32)
    meta = {"series_uid": series_uid} if series_uid else {}
    return vol.replace(data=da.from_array(img[None], chunks=(1, chunks, chunks, chunks)), meta=meta)


def store_with(tmp_path, volumes: dict[str, Volume], name: str = "iso") -> voxelstream.Store:
    store = voxelstream.open_store(tmp_path / "store.zarr", create=True)
    for vid, vol in volumes.items():
        store.write(vol, vid, name, chunks=16)
    return store


def sitk_image(vol: Volume) -> sitk.Image:
    """The volume as a SimpleITK image with the same geometry (set through ITK's own API)."""
    img = sitk.GetImageFromArray(np.asarray(vol.data[0]))  # the single channel of (1, Z, Y, X)
    # Volume.origin/spacing are in array order (z, y, x); ITK wants (x, y, z)
    origin, spacing, direction = vol.origin[::-1], vol.spacing[::-1], vol.direction.ravel()
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetDirection(tuple(float(v) for v in direction))
    return img


def sitk_centre_zyx(img: sitk.Image, world_xyz: Sequence[float]) -> tuple[int, int, int]:
    """rint of SimpleITK's continuous index of a world point, in (z, y, x) order."""
    ix = img.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in world_xyz))
    return tuple(int(np.rint(v)) for v in ix[::-1])  # type: ignore[return-value]


def hand_cube(arr: np.ndarray, centre_zyx: Sequence[int], edge: Sequence[int], pad: float) -> np.ndarray:
    """Cut [c - e//2, c - e//2 + e) by padding the whole array first (a different route from
    the code under test, which clips and never pads the source)."""
    width = max(edge)
    padded = np.pad(arr, width, constant_values=pad)
    sl = tuple(slice(c - e // 2 + width, c - e // 2 + e + width) for c, e in zip(centre_zyx, edge))
    return padded[sl]


def model_with_random_statistics(cfg, seed: int):
    """A NoduleNet of ``cfg`` in eval mode whose batch norms hold random running statistics
    and affine parameters, so that a test comparing two ways of evaluating it sees them."""
    from flax import nnx

    from voxelstream_nodules.model import build

    model = build(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.BatchNorm):  # eval mode must really use these
            n = node.mean[...].shape[0]
            node.mean[...] = rng.normal(0.0, 0.5, n).astype(np.float32)
            node.var[...] = rng.uniform(0.2, 3.0, n).astype(np.float32)
            node.scale[...] = rng.uniform(0.5, 1.5, n).astype(np.float32)
            node.bias[...] = rng.normal(0.0, 0.3, n).astype(np.float32)
    model.eval()
    return model
