"""Average recall of class-agnostic mask proposals, with pycocotools (AR@100, AR@1000, and at 1000
by object size where the ground truth has objects of that size)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from promptseg.evaluate.coco import Source, load_ground_truth, load_results, run_cocoeval

AREAS = ("all", "small", "medium", "large")


def _mean_recall(recall: np.ndarray) -> Optional[float]:
    """Mean over IoU thresholds of a (T,) recall column; None where the ground truth has no object (-1)."""
    valid = recall[recall > -1]
    return float(valid.mean()) if len(valid) else None


def evaluate_proposals(ground_truth: Source, results: Source, max_dets: Sequence[int] = (100, 1000)) -> dict:
    """AR@N for each N of ``max_dets`` and AR_small/medium/large at the largest N, class-agnostic.

    Args:
        ground_truth: COCO instances (path or dict); categories are ignored.
        results: COCO results list (path or list) with ``image_id``, ``segmentation`` (RLE), ``score``.
    Returns:
        {"AR@100": ..., "AR@1000": ..., "AR_small@1000": ..., ..., "images": n, "proposals": m};
        a size without ground-truth objects is None. AR is averaged over IoU 0.50:0.05:0.95.
    """
    max_dets = sorted(int(n) for n in max_dets)
    coco = load_ground_truth(ground_truth)
    detections, listed = load_results(coco, results)
    metrics: dict = {"images": len(coco.getImgIds()), "proposals": len(listed)}
    if detections is None:
        for n in max_dets:
            metrics[f"AR@{n}"] = 0.0
        for area in AREAS[1:]:
            metrics[f"AR_{area}@{max_dets[-1]}"] = 0.0
        return metrics
    evaluator = run_cocoeval(coco, detections, use_categories=False, max_dets=max_dets)
    recall = evaluator.eval["recall"]  # (T, K=1, A, M)
    labels = evaluator.params.areaRngLbl
    for m, n in enumerate(max_dets):
        metrics[f"AR@{n}"] = _mean_recall(recall[:, 0, labels.index("all"), m])
    for area in AREAS[1:]:
        metrics[f"AR_{area}@{max_dets[-1]}"] = _mean_recall(recall[:, 0, labels.index(area), -1])
    return metrics
