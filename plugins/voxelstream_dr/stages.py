"""The fundus preprocessing stages (lazy, chunk-wise), built on :mod:`voxelstream_dr.fundus`.

* ``fundus_crop``: scale so the fundus radius becomes ``radius`` and crop ``2R x 2R`` around
  its centre (black outside the photograph); float32. Each output chunk is one task reading
  only the input region it covers. The fundus geometry is measured from the middle row when
  not given (that reads one row of chunks when the stage is called; pass ``fundus_radius``
  and ``centre`` to keep the call free of reads).
* ``local_average``: ``4 * img - 4 * gaussian(img, sigma) + 128`` clipped, uint8; a
  blockwise stage whose halo follows sigma.
* ``fundus_border``: pixels outside ``fraction`` of the image's half-width set to ``value``.

The geometry is kept exact: ``fundus_crop``'s output maps each pixel to its position in
the original photograph (spacing ``1 / scale`` original pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from voxelstream.specs import StageSpec
from voxelstream.stages import blockwise_stage

from .fundus import crop_block, gaussian_halo, local_average, measure_fundus, scale_weights

__all__ = ["CROP_STAGE", "LOCAL_AVERAGE_STAGE", "BORDER_STAGE", "fundus_crop", "fundus_border", "measure_volume",
           "STAGES"]

CROP_CHUNK = 256


def _need_2d(volume: Any, stage: str) -> None:
    if volume.spatial_ndim != 2:
        raise ValueError(f"{stage} needs a 2-D photograph (C, H, W); this image has axes {volume.axes}")


def measure_volume(volume: Any) -> tuple[float, float, float]:
    """``(radius, centre_y, centre_x)`` of the fundus in ``volume``'s pixels, from its middle
    row (reads that row only)."""
    _need_2d(volume, "measure")
    h = volume.spatial_shape[0]
    return tuple(measure_fundus(np.asarray(volume.data[:, h // 2, :].compute()), h))  # type: ignore[return-value]


def _crop_task(piece: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], radius: int,
               centre: tuple[float, float], scale: float, shape: tuple[int, int]) -> np.ndarray:
    _, wy = scale_weights(rows[0], rows[1], radius, centre[0], scale, shape[0])
    _, wx = scale_weights(cols[0], cols[1], radius, centre[1], scale, shape[1])
    return crop_block(piece, wy, wx)


def fundus_crop(volume: Any, radius: int = 256, fundus_radius: float | None = None,
                centre: Sequence[float] | None = None, chunks: int = CROP_CHUNK) -> Any:
    """Scale the fundus to ``radius`` pixels and crop ``(C, 2R, 2R)`` around its centre."""
    import dask
    import dask.array as da

    _need_2d(volume, "fundus_crop")
    radius = int(radius)
    if radius < 1:
        raise ValueError(f"radius must be at least 1 pixel, got {radius}")
    if fundus_radius is None or centre is None:
        r, cy, cx = measure_volume(volume)
        fundus_radius = r if fundus_radius is None else fundus_radius
        centre = (cy, cx) if centre is None else centre
    cy, cx = (float(c) for c in centre)
    scale = radius / float(fundus_radius)
    h, w = volume.spatial_shape
    size, step = 2 * radius, max(1, int(chunks))
    data = volume.data
    rows = []
    for i0 in range(0, size, step):
        i1 = min(size, i0 + step)
        y0, wy = scale_weights(i0, i1, radius, cy, scale, h)
        row = []
        for j0 in range(0, size, step):
            j1 = min(size, j0 + step)
            x0, wx = scale_weights(j0, j1, radius, cx, scale, w)
            piece = data[:, y0:y0 + wy.shape[1], x0:x0 + wx.shape[1]]
            task = dask.delayed(_crop_task, pure=True)(piece, (i0, i1), (j0, j1), radius, (cy, cx), scale, (h, w))
            row.append(da.from_delayed(task, shape=(volume.channels, i1 - i0, j1 - j0), dtype=np.float32))
        rows.append(row)
    out = da.block(rows)
    # output index (i, j) -> input index centre + (i - (R - 0.5)) / scale: fold into the affine
    to_input = np.eye(3)
    to_input[0, 0] = to_input[1, 1] = 1.0 / scale
    to_input[:2, 2] = [cy - (radius - 0.5) / scale, cx - (radius - 0.5) / scale]
    meta = dict(volume.meta)
    meta["fundus"] = {"radius": float(fundus_radius), "centre": [cy, cx], "scale": scale}
    return volume.replace(data=out, affine=volume.affine @ to_input, meta=meta)


def fundus_border(volume: Any, fraction: float = 0.9, value: int = 128) -> Any:
    """Set the pixels farther than ``fraction * min(H, W) / 2`` from the centre to ``value``."""
    import dask.array as da

    _need_2d(volume, "fundus_border")
    data = volume.data
    (h, w), (ych, xch) = volume.spatial_shape, data.chunks[1:]
    # the circle as lazy coordinate arrays chunked like the image: every block computes its
    # own part of the mask (the same arithmetic as border_block)
    yy = da.arange(h, chunks=(ych,), dtype=np.float64)[:, None] - (h - 1) / 2
    xx = da.arange(w, chunks=(xch,), dtype=np.float64)[None, :] - (w - 1) / 2
    outside = yy**2 + xx**2 > (float(fraction) * min(h, w) / 2) ** 2
    return volume.replace(data=da.where(outside[None], np.asarray(value, data.dtype), data))


CROP_STAGE = StageSpec(
    name="fundus_crop",
    fn=fundus_crop,
    description="scale a fundus photograph to a fixed fundus radius and crop 2R x 2R around it (float32)",
    params={"radius": 256, "fundus_radius": None, "centre": None, "chunks": CROP_CHUNK},
)
LOCAL_AVERAGE_STAGE = blockwise_stage(
    "local_average",
    local_average,
    halo=lambda sigma=256 / 30: gaussian_halo(sigma),
    description="4 * image - 4 * gaussian(image, sigma) + 128, clipped to 0..255 (uint8), per channel",
)
BORDER_STAGE = StageSpec(
    name="fundus_border",
    fn=fundus_border,
    description="set everything outside a centred circle (fraction of the half-width) to a value",
    params={"fraction": 0.9, "value": 128},
)
STAGES = [CROP_STAGE, LOCAL_AVERAGE_STAGE, BORDER_STAGE]
