"""Assertions that a promptseg prediction matches the official one within the issue's tolerances."""

from __future__ import annotations

import numpy as np

# Tolerances of the fp32 parity tests (see README "Faithfulness").
EMBEDDING_REL_ERR = 1e-4
LOW_RES_MAX_ERR = 1e-3  # relative to max |official logit|
IOU_ABS_ERR = 1e-3
MASK_PIXEL_FRACTION = 1e-3


def assert_prediction_matches(expected: tuple, actual: tuple, what: str, scale: float = 1.0) -> None:
    """Compare (masks, scores, low_res_logits) tuples from ``predict``; ``scale`` widens every tolerance."""
    exp_masks, exp_scores, exp_logits = expected
    masks, scores, logits = actual
    assert masks.shape == exp_masks.shape and masks.dtype == exp_masks.dtype, (what, masks.shape, masks.dtype)
    assert scores.shape == exp_scores.shape and scores.dtype == exp_scores.dtype, (what, scores.shape, scores.dtype)
    assert logits.shape == exp_logits.shape and logits.dtype == exp_logits.dtype, (what, logits.shape, logits.dtype)
    logit_err = np.abs(logits - exp_logits).max() / np.abs(exp_logits).max()
    assert logit_err <= LOW_RES_MAX_ERR * scale, f"{what}: low-res logits max error {logit_err:.2e} of max"
    iou_err = np.abs(scores - exp_scores).max()
    assert iou_err <= IOU_ABS_ERR * scale, f"{what}: IoU predictions differ by {iou_err:.2e}"
    if masks.dtype == np.bool_:
        differing = (masks != exp_masks).mean()
        assert differing <= MASK_PIXEL_FRACTION * scale, f"{what}: {differing:.3%} of mask pixels differ"
    else:
        mask_err = np.abs(masks - exp_masks).max() / np.abs(exp_masks).max()
        assert mask_err <= LOW_RES_MAX_ERR * scale, f"{what}: full-size logits max error {mask_err:.2e} of max"


def prompt_cases(height: int, width: int) -> dict[str, dict]:
    """Prompts in pixels of an (height, width) image, each a dict of ``predict`` keyword arguments."""
    box = np.array([0.2 * width, 0.25 * height, 0.7 * width, 0.8 * height])
    points = np.array([[0.45 * width, 0.5 * height], [0.8 * width, 0.2 * height], [0.3 * width, 0.6 * height]])
    return {
        "one point": {"point_coords": points[:1], "point_labels": np.array([1])},
        "points with negatives": {"point_coords": points, "point_labels": np.array([1, 0, 1])},
        "box": {"box": box},
        "box and points": {"point_coords": points[:2], "point_labels": np.array([1, 0]), "box": box},
    }
