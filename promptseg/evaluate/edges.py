"""Boundary precision, recall and F of edge maps against ground-truth boundaries (BSDS-style: ODS,
OIS and AP over a sweep of thresholds).

Matching. For a threshold t, the predicted boundary is the set of pixels with strength >= t. A
predicted pixel and a ground-truth pixel may match when they lie within ``max_dist`` times the
image diagonal (0.0075, the BSDS benchmark's default). Each pixel matches at most one pixel of the
other set: candidate pairs are taken greedily by increasing distance, every pair at one offset at
once (a translation pairs each pixel with at most one other, so pairs at one offset never
conflict). With several annotators, a predicted pixel is correct when it matches a pixel of any
annotator, and recall pools the matched pixels of all annotators (as BSDS does).

How this differs from the BSDS benchmark code (``correspondPixels``): BSDS solves a minimum-cost
bipartite assignment (CSA), whose matching is maximal; the greedy nearest-first matching here can
leave a few pixels unmatched that an assignment would have paired, so its scores are equal or
slightly lower. BSDS also thins each thresholded map morphologically (``bwmorph thin``); here the
maps are expected thin already (edge NMS), and are not thinned again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence, Union

import numpy as np

DEFAULT_MAX_DIST = 0.0075


@dataclass(frozen=True)
class BoundaryCounts:
    """Pixel counts of one prediction at one threshold: matched / all predicted pixels, and matched /
    all ground-truth pixels (summed over annotators)."""

    matched_pred: int
    pred: int
    matched_gt: int
    gt: int


@dataclass(frozen=True)
class EdgeScores:
    """ODS (one threshold for the dataset), OIS (the best threshold per image) and AP."""

    ods_precision: float
    ods_recall: float
    ods_f: float
    ods_threshold: float
    ois_precision: float
    ois_recall: float
    ois_f: float
    ap: float
    images: int

    def as_dict(self) -> dict:
        return asdict(self)


def _disk_offsets(radius: float) -> list[tuple[int, int]]:
    """(dy, dx) integer offsets within ``radius``, nearest first."""
    reach = int(np.floor(radius))
    offsets = [
        (dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1) if dy * dy + dx * dx <= radius * radius
    ]
    return sorted(offsets, key=lambda o: (o[0] ** 2 + o[1] ** 2, o))


def _shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = mask[y + dy, x + dx]`` (False outside)."""
    height, width = mask.shape
    out = np.zeros_like(mask)
    out[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)] = mask[
        max(0, dy) : height - max(0, -dy), max(0, dx) : width - max(0, -dx)
    ]
    return out


def match_pixels(pred: np.ndarray, gt: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one greedy matching of two (H, W) bool pixel sets within ``radius`` pixels, nearest first.

    Returns:
        (H, W) bool matched predicted pixels and (H, W) bool matched ground-truth pixels.
    """
    free_pred, free_gt = pred.copy(), gt.copy()
    for dy, dx in _disk_offsets(radius):
        pairs = free_pred & _shifted(free_gt, dy, dx)  # predicted pixel p pairs with gt pixel p + (dy, dx)
        if pairs.any():
            free_pred &= ~pairs
            free_gt &= ~_shifted(pairs, -dy, -dx)
    return pred & ~free_pred, gt & ~free_gt


def boundary_counts(
    pred: np.ndarray, gts: Sequence[np.ndarray], max_dist: float = DEFAULT_MAX_DIST
) -> BoundaryCounts:
    """Counts of a (H, W) bool predicted boundary against one or more (H, W) bool ground truths."""
    radius = max_dist * float(np.hypot(*pred.shape))
    matched_any = np.zeros_like(pred)
    matched_gt = total_gt = 0
    for gt in gts:
        matched_pred, matched = match_pixels(pred, gt, radius)
        matched_any |= matched_pred
        matched_gt += int(matched.sum())
        total_gt += int(gt.sum())
    return BoundaryCounts(int(matched_any.sum()), int(pred.sum()), matched_gt, total_gt)


def _prf(matched_pred, pred, matched_gt, gt):
    precision = np.divide(matched_pred, pred, out=np.ones_like(matched_pred, dtype=float), where=pred > 0)
    recall = np.divide(matched_gt, gt, out=np.zeros_like(matched_gt, dtype=float), where=gt > 0)
    total = precision + recall
    f = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return precision, recall, f


def _check_maps(pred: np.ndarray, gts: Sequence[np.ndarray], index: int) -> list[np.ndarray]:
    if not isinstance(pred, np.ndarray) or pred.ndim != 2:
        raise ValueError(f"edge map {index} must be an (H, W) array, got {getattr(pred, 'shape', type(pred).__name__)}")
    gts = [gts] if isinstance(gts, np.ndarray) else list(gts)
    if not gts:
        raise ValueError(f"image {index} has no ground-truth boundary map")
    for gt in gts:
        if gt.shape != pred.shape:
            raise ValueError(f"image {index}: ground truth is {gt.shape}, edge map is {pred.shape}")
    return [gt.astype(bool) for gt in gts]


def evaluate_edges(
    preds: Sequence[np.ndarray],
    gts: Sequence[Union[np.ndarray, Sequence[np.ndarray]]],
    thresholds: Union[int, Sequence[float]] = 99,
    max_dist: float = DEFAULT_MAX_DIST,
) -> EdgeScores:
    """ODS, OIS and AP of edge maps.

    Args:
        preds: per image, an (H, W) float edge map in [0, 1] (not modified).
        gts: per image, an (H, W) bool boundary map or a list of them (one per annotator).
        thresholds: how many evenly spaced thresholds in (0, 1) (BSDS: 99), or the thresholds.
        max_dist: matching tolerance as a fraction of the image diagonal.
    """
    if len(preds) != len(gts) or len(preds) == 0:
        raise ValueError(f"need one ground truth per edge map and at least one image, got {len(preds)} maps and {len(gts)} ground truths")
    levels = np.linspace(0, 1, thresholds + 2)[1:-1] if isinstance(thresholds, int) else np.asarray(thresholds, float)
    counts = np.zeros((len(preds), len(levels), 4), dtype=np.int64)
    for index, (pred, gt) in enumerate(zip(preds, gts)):
        annotators = _check_maps(pred, gt, index)
        for level_index, level in enumerate(levels):
            c = boundary_counts(pred >= level, annotators, max_dist)
            counts[index, level_index] = (c.matched_pred, c.pred, c.matched_gt, c.gt)
    totals = counts.sum(0)
    precision, recall, f = _prf(*totals.T)
    best = int(np.argmax(f))
    # OIS: each image at its own best threshold, counts pooled.
    per_image_f = np.stack([_prf(*image.T)[2] for image in counts])
    chosen = counts[np.arange(len(preds)), per_image_f.argmax(1)].sum(0)
    ois_p, ois_r, ois_f = (float(v[0]) for v in _prf(*chosen[:, None]))
    return EdgeScores(
        ods_precision=float(precision[best]),
        ods_recall=float(recall[best]),
        ods_f=float(f[best]),
        ods_threshold=float(levels[best]),
        ois_precision=ois_p,
        ois_recall=ois_r,
        ois_f=ois_f,
        ap=average_precision(recall, precision),
        images=len(preds),
    )


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision-recall curve, precision interpolated at recalls 0, 0.01, ..., 1
    (0 beyond the largest recall reached), as the BSDS benchmark integrates it."""
    order = np.argsort(recall, kind="stable")
    recall, precision = recall[order], precision[order]
    recall, unique = np.unique(recall, return_index=True)
    precision = precision[unique]
    if len(recall) < 2:
        return 0.0
    grid = np.linspace(0, 1, 101)
    values = np.interp(grid, recall, precision, left=precision[0], right=0.0)
    values[grid > recall[-1]] = 0.0
    return float(values.sum() * 0.01)
