"""Mask AP of instance segmentation results, with pycocotools' ``COCOeval`` (iouType ``segm``)."""

from __future__ import annotations

import contextlib
import io

from promptseg.evaluate.coco import Source, load_ground_truth, load_results, run_cocoeval

# The first six numbers of COCOeval.summarize() for segmentation.
NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


def evaluate_instances(ground_truth: Source, results: Source) -> dict:
    """Mask AP (0.50:0.95), AP50, AP75 and AP by size, per category then averaged, as COCO reports it.

    Args:
        ground_truth: COCO instances (path or dict).
        results: COCO results list (path or list) with ``image_id``, ``category_id``, ``segmentation``, ``score``.
    Returns:
        {"AP": ..., "AP50": ..., ..., "images": n, "results": m}; a size without ground truth is None.
    """
    coco = load_ground_truth(ground_truth)
    detections, listed = load_results(coco, results)
    metrics: dict = {"images": len(coco.getImgIds()), "results": len(listed)}
    if detections is None:
        return {**{name: 0.0 for name in NAMES}, **metrics}
    missing = [i for i, result in enumerate(listed) if "category_id" not in result]
    if missing:
        raise ValueError(f"result {missing[0]} lacks category_id, which mask AP needs")
    evaluator = run_cocoeval(coco, detections, use_categories=True, max_dets=[1, 10, 100])
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    for name, value in zip(NAMES, evaluator.stats[:6]):
        metrics[name] = None if value < 0 else float(value)
    return metrics
