"""The LUNA16 FROC protocol: match CAD marks to nodules, sweep the threshold, report the CPM.

Follows the challenge's ``noduleCADEvaluationLUNA16.py`` (Setio et al. 2017), without its
bootstrapping and without sklearn:

- A mark hits a nodule when its squared world distance to the centre is *strictly* less
  than the squared radius (``dist < radiusSquared``).
- Excluded findings (``annotations_excluded.csv``) with a diameter of -1 (any negative
  value) count as 10 mm wide. A mark on an excluded finding is neither a hit nor a false
  positive: it is dropped. Included nodules are matched first, so a mark that hits both an
  included nodule and an excluded finding is a hit.
- Each included nodule enters the sweep once, with the highest probability among the marks
  that hit it; the other marks on it are dropped (not false positives). A mark that hits two
  nodules (overlapping annotations) counts for both, as in the script.
- A nodule no mark hits lowers the sensitivity at every threshold (it stays in the
  denominator) but takes no part in the sweep.
- Every mark that hits nothing is a false positive. FPs per scan divide by the number of
  evaluated scans, scans without marks included.
- Per scan at most ``max_marks_per_scan`` marks are kept (the script passes 100): when
  there are more, only those with a probability strictly above the 101st highest survive.
- The FROC curve is the script's ``roc_curve`` sweep rescaled: at each distinct
  probability ``t`` (descending), FPs/scan = #FP with p >= t / n_scans and sensitivity =
  #nodules hit with p >= t / n_nodules, starting from (0, 0). (sklearn's
  ``drop_intermediate`` only removes collinear points, which changes no interpolated value.)
- The sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FPs/scan is ``np.interp`` on that curve
  (beyond its last point: the final sensitivity); the CPM is their mean. On a vertical
  step ``np.interp`` takes the top, i.e. the best sensitivity reached at that FP rate.

Where the script would divide by zero we do not: with no nodule hit the sensitivity is 0
(the script gives NaN); with no false positive the curve stays at 0 FPs/scan (as the
script's special case does).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxelstream.errors import ReadError, VoxelstreamError
from voxelstream.tables import read_text

from .annotations import Annotation
from .detection import Detection

__all__ = [
    "FP_RATES",
    "EXCLUDED_UNKNOWN_DIAMETER_MM",
    "MAX_MARKS_PER_SCAN",
    "ScanMatch",
    "FrocResult",
    "match_scan",
    "froc_curve",
    "evaluate_froc",
    "read_series_list",
    "write_froc_json",
    "plot_froc",
]

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
EXCLUDED_UNKNOWN_DIAMETER_MM = 10.0  # the script's stand-in for a -1 diameter
MAX_MARKS_PER_SCAN = 100  # what the script passes as maxNumberOfCADMarks


@dataclass(frozen=True)
class ScanMatch:
    """The outcome of matching one scan's marks.

    Attributes:
        nodule_scores: per included nodule, the best probability of a mark hitting it
            (NaN when none does).
        fp_scores: probabilities of the marks that hit nothing.
        n_on_excluded: marks dropped because they lie on an excluded finding only.
        n_extra_on_nodules: marks dropped because a better mark hit the same nodule.
    """

    nodule_scores: np.ndarray
    fp_scores: np.ndarray
    n_on_excluded: int
    n_extra_on_nodules: int


def _hits(marks: np.ndarray, centres: np.ndarray, diameters: np.ndarray) -> np.ndarray:
    """(marks, findings) boolean: squared distance strictly below the squared radius."""
    if len(marks) == 0 or len(centres) == 0:
        return np.zeros((len(marks), len(centres)), dtype=bool)
    d2 = ((marks[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)
    return d2 < (diameters[None, :] / 2.0) ** 2


def match_scan(
    marks_xyz: np.ndarray,
    probs: np.ndarray,
    nodules_xyz: np.ndarray,
    nodule_diameters: np.ndarray,
    excluded_xyz: np.ndarray | None = None,
    excluded_diameters: np.ndarray | None = None,
) -> ScanMatch:
    """Match one scan's marks (world mm, (N, 3)) to its included nodules and excluded
    findings, as the LUNA16 script does (see the module docstring)."""
    marks = np.asarray(marks_xyz, dtype=float).reshape(-1, 3)
    probs = np.asarray(probs, dtype=float).reshape(-1)
    nod = np.asarray(nodules_xyz, dtype=float).reshape(-1, 3)
    excl = np.asarray(excluded_xyz if excluded_xyz is not None else [], dtype=float).reshape(-1, 3)
    excl_d = np.asarray(excluded_diameters if excluded_diameters is not None else [], dtype=float)
    excl_d = np.where(excl_d < 0, EXCLUDED_UNKNOWN_DIAMETER_MM, excl_d)
    # included nodules: the script gives no -1 stand-in here; a negative diameter hits nothing
    hit_nod = _hits(marks, nod, np.asarray(nodule_diameters, dtype=float))
    hit_excl = _hits(marks, excl, excl_d)
    on_nodule = hit_nod.any(axis=1)
    on_excluded_only = hit_excl.any(axis=1) & ~on_nodule
    scores = np.where(hit_nod, probs[:, None], -np.inf).max(axis=0, initial=-np.inf)
    nodule_scores = np.where(np.isfinite(scores), scores, np.nan)
    # the script counts, per nodule, its matching marks beyond the best one
    extra = int(np.maximum(hit_nod.sum(axis=0) - 1, 0).sum())
    return ScanMatch(
        nodule_scores=nodule_scores,
        fp_scores=probs[~on_nodule & ~on_excluded_only],
        n_on_excluded=int(on_excluded_only.sum()),
        n_extra_on_nodules=extra,
    )


def froc_curve(hit_scores: np.ndarray, fp_scores: np.ndarray, n_nodules: int,
               n_scans: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FROC curve ``(fps_per_scan, sensitivity, thresholds)``: one point per distinct
    probability (descending), after a first point (0, 0) at threshold +inf.

    ``hit_scores``: the score of each nodule that was hit; ``fp_scores``: each false
    positive's; ``n_nodules`` counts missed nodules too.
    """
    hits = np.asarray(hit_scores, dtype=float)
    fps = np.asarray(fp_scores, dtype=float)
    scores = np.concatenate([hits, fps])
    is_hit = np.concatenate([np.ones(len(hits)), np.zeros(len(fps))])
    order = np.argsort(-scores, kind="stable")
    scores, is_hit = scores[order], is_hit[order]
    # last index of each run of equal scores: the sweep steps once per distinct value
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1] if len(scores) else np.array([], int)
    tp_count = np.cumsum(is_hit)[last] if len(scores) else np.array([])
    fp_count = (last + 1) - tp_count
    fps_per_scan = np.r_[0.0, fp_count / n_scans]
    sensitivity = np.r_[0.0, tp_count / n_nodules]
    thresholds = np.r_[np.inf, scores[last] if len(scores) else []]
    return fps_per_scan, sensitivity, thresholds


def _cap_marks(probs: np.ndarray, max_marks: int) -> np.ndarray:
    """Boolean mask of the marks the script keeps (all of them when ``max_marks`` <= 0)."""
    if max_marks <= 0 or len(probs) <= max_marks:
        return np.ones(len(probs), dtype=bool)
    cut = np.sort(probs)[::-1][max_marks]
    return probs > cut


@dataclass(frozen=True)
class FrocResult:
    """The outcome of an evaluation; ``to_json()`` is what ``froc.json`` holds."""

    fps_per_scan: tuple[float, ...]
    sensitivity: tuple[float, ...]
    cpm: float
    n_scans: int
    n_nodules: int
    curve_fps: np.ndarray = field(repr=False)
    curve_sensitivity: np.ndarray = field(repr=False)
    n_marks: int = 0
    n_nodules_hit: int = 0
    n_false_positives: int = 0
    n_on_excluded: int = 0
    n_extra_on_nodules: int = 0
    n_marks_capped: int = 0
    n_marks_outside_series: int = 0

    def to_json(self) -> dict:
        return {
            "fps_per_scan": list(self.fps_per_scan),
            "sensitivity": [float(s) for s in self.sensitivity],
            "cpm": float(self.cpm),
            "n_scans": self.n_scans,
            "n_nodules": self.n_nodules,
        }


def _group(items: Iterable, uid_of) -> dict[str, list]:
    groups: dict[str, list] = defaultdict(list)
    for it in items:
        groups[uid_of(it)].append(it)
    return groups


def _xyz(rows: Sequence) -> np.ndarray:
    return np.asarray([r.world_xyz for r in rows], dtype=float).reshape(-1, 3)


def evaluate_froc(
    detections: Sequence[Detection],
    annotations: Sequence[Annotation],
    excluded: Sequence[Annotation] = (),
    series: Sequence[str] | None = None,
    *,
    max_marks_per_scan: int = MAX_MARKS_PER_SCAN,
) -> FrocResult:
    """Score ``detections`` against ``annotations`` with the LUNA16 FROC protocol.

    Args:
        series: the evaluated scans (default: every series with an annotation or a
            detection); rows of other series are ignored, scans without marks still count.
        max_marks_per_scan: the script's cap on marks per scan (<= 0: no cap).
    """
    if series is None:
        uids = sorted({a.series_uid for a in annotations} | {d.series_uid for d in detections})
    else:
        uids = list(dict.fromkeys(series))  # a uid listed twice is one scan
    if not uids:
        raise VoxelstreamError("evaluate: no scans to evaluate (empty series list and tables)")
    dets = _group(detections, lambda d: d.series_uid)
    nods = _group(annotations, lambda a: a.series_uid)
    excl = _group(excluded, lambda a: a.series_uid)
    wanted = set(uids)
    hit_scores: list[np.ndarray] = []
    fp_scores: list[np.ndarray] = []
    n_nodules = n_on_excl = n_extra = n_capped = n_marks = 0
    for uid in uids:
        marks = dets.get(uid, [])
        probs = np.asarray([d.probability for d in marks], dtype=float)
        keep = _cap_marks(probs, max_marks_per_scan)
        n_capped += int((~keep).sum())
        n_marks += int(keep.sum())
        scan_nodules = nods.get(uid, [])
        m = match_scan(
            _xyz(marks)[keep], probs[keep],
            _xyz(scan_nodules), np.asarray([a.diameter_mm for a in scan_nodules], dtype=float),
            _xyz(excl.get(uid, [])), np.asarray([a.diameter_mm for a in excl.get(uid, [])], dtype=float),
        )
        n_nodules += len(scan_nodules)
        hit_scores.append(m.nodule_scores[~np.isnan(m.nodule_scores)])
        fp_scores.append(m.fp_scores)
        n_on_excl += m.n_on_excluded
        n_extra += m.n_extra_on_nodules
    if n_nodules == 0:
        raise VoxelstreamError(
            "evaluate: the evaluated scans have no annotated nodule, so sensitivity is undefined; "
            "check --annotations and --series"
        )
    hits = np.concatenate(hit_scores)
    fps = np.concatenate(fp_scores)
    curve_fps, curve_sens, _ = froc_curve(hits, fps, n_nodules, len(uids))
    sens = np.interp(FP_RATES, curve_fps, curve_sens)
    return FrocResult(
        fps_per_scan=FP_RATES,
        sensitivity=tuple(float(s) for s in sens),
        cpm=float(np.mean(sens)),
        n_scans=len(uids),
        n_nodules=n_nodules,
        curve_fps=curve_fps,
        curve_sensitivity=curve_sens,
        n_marks=n_marks,
        n_nodules_hit=len(hits),
        n_false_positives=len(fps),
        n_on_excluded=n_on_excl,
        n_extra_on_nodules=n_extra,
        n_marks_capped=n_capped,
        n_marks_outside_series=sum(len(v) for k, v in dets.items() if k not in wanted),
    )


# -- inputs and outputs ------------------------------------------------------------------------


def read_series_list(path: str | Path) -> list[str]:
    """Series uids, one per line (``seriesuids.csv``: first column; an optional
    ``seriesuid`` header; CRLF or LF)."""
    p = Path(path)
    lines = read_text(p, "series list").splitlines()
    uids = [ln.split(",")[0].strip() for ln in lines]
    uids = [u for u in uids if u]
    if uids and uids[0].lower() == "seriesuid":
        uids = uids[1:]
    if not uids:
        raise ReadError(f"{p}: the series list is empty; give one series uid per line")
    return uids


def write_froc_json(result: FrocResult, out_dir: str | Path) -> Path:
    """Write ``out_dir/froc.json``; returns its path."""
    out = Path(out_dir) / "froc.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return out


def plot_froc(result: FrocResult, out_dir: str | Path, label: str = "CAD") -> Path:
    """Write ``out_dir/froc.png``: the curve on a log2 axis from 1/8 to 8 FPs/scan (dense
    ``np.interp`` as the script plots it), the seven operating points marked, CPM in the
    title; returns its path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    xs = np.linspace(FP_RATES[0], FP_RATES[-1], 2001)
    ys = np.interp(xs, result.curve_fps, result.curve_sensitivity)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        ax.plot(xs, ys, color="tab:blue", lw=2, label=label)
        ax.plot(result.fps_per_scan, result.sensitivity, "o", color="tab:red", label="operating points")
        ax.set_xscale("log", base=2)
        ax.set_xlim(FP_RATES[0], FP_RATES[-1])
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(FixedLocator(FP_RATES))
        ax.xaxis.set_major_formatter(FixedFormatter(["1/8", "1/4", "1/2", "1", "2", "4", "8"]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yticks(np.arange(0, 1.01, 0.1))
        ax.grid(True, which="both", alpha=0.4)
        ax.set_xlabel("Average number of false positives per scan")
        ax.set_ylabel("Sensitivity")
        ax.set_title(f"FROC - CPM {result.cpm:.3f} ({result.n_nodules} nodules, {result.n_scans} scans)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        out = Path(out_dir) / "froc.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
