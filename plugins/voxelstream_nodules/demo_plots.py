"""Pictures of the demo: FROC curves per round and a probability map over CT slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voxelstream.store import open_store

from .annotations import read_annotations
from .froc import FP_RATES
from .outputs import ISO_OUTPUT, PROB_OUTPUT
from .scoring import series_volumes

__all__ = ["plot_frocs", "plot_overlay"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_frocs(rounds: list[dict], path: Path) -> Path:
    """All rounds' FROC curves on one log2 axis (1/8 to 8 FPs per scan)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=100)
    xs = np.linspace(FP_RATES[0], FP_RATES[-1], 2001)
    for r, f in enumerate(rounds):
        ax.plot(xs, np.interp(xs, f["curve_fps"], f["curve_sensitivity"]), lw=2,
                label=f"round {r}: CPM {f['cpm']:.3f}")
        ax.plot(f["fps_per_scan"], f["sensitivity"], "o", color=ax.lines[-1].get_color())
    ax.set_xscale("log", base=2)
    ax.set_xlim(FP_RATES[0], FP_RATES[-1])
    ax.set_xticks(FP_RATES, ["1/8", "1/4", "1/2", "1", "2", "4", "8"])
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.4)
    ax.set_xlabel("false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.set_title("FROC before and after hard-negative mining")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_overlay(store_path: str, annotations_csv: Path, path: Path, title: str, n: int = 3) -> Path:
    """Axial slices through the largest nodules of the store: CT (``iso``) in grey, the
    probability map (``prob``, nearest grid point) in colour, annotations as circles."""
    plt = _pyplot()
    store = open_store(store_path)
    volumes = series_volumes(store, PROB_OUTPUT)
    rows = sorted((a for a in read_annotations(annotations_csv) if a.series_uid in volumes),
                  key=lambda a: -a.diameter_mm)[:n]
    fig, axes = plt.subplots(1, max(len(rows), 1), figsize=(4 * max(len(rows), 1), 4.3), dpi=100, squeeze=False)
    for ax, ann in zip(axes[0], rows):
        vid = volumes[ann.series_uid]
        iso, prob = store.open(vid, ISO_OUTPUT), store.open(vid, PROB_OUTPUT)
        z = int(np.rint(iso.world_to_index(ann.world_xyz))[0])
        z = min(max(z, 0), iso.spatial_shape[0] - 1)
        ct = np.asarray(iso.data[0, z]).astype(np.float32)  # channel-first (1, Z, Y, X)
        yy, xx = np.mgrid[0 : ct.shape[0], 0 : ct.shape[1]]
        idx = np.stack([np.full(yy.size, z), yy.ravel(), xx.ravel()], axis=1)
        g = np.rint(prob.world_to_index(iso.index_to_world(idx))).astype(int)
        inside = np.all((g >= 0) & (g < np.array(prob.spatial_shape)), axis=1)
        pmap = np.zeros(yy.size, dtype=np.float32)
        pdata = np.asarray(prob.data[0])  # a probability map is small: stride^3 times fewer voxels
        pmap[inside] = pdata[tuple(g[inside].T)]
        ax.imshow(ct, cmap="gray", vmin=0, vmax=1)
        ax.imshow(np.ma.masked_less(pmap.reshape(ct.shape), 0.1), cmap="inferno", vmin=0, vmax=1, alpha=0.55)
        cz, cy, cx = iso.world_to_index(ann.world_xyz)
        r = ann.diameter_mm / 2 / iso.spacing[1]
        ax.add_patch(plt.Circle((cx, cy), r + 2, fill=False, color="cyan", lw=1.2))
        ax.set_title(f"{ann.diameter_mm:.0f} mm nodule, slice {z}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"probability map over CT, {title} (cyan: annotated nodule)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
