"""Boundary matching and ODS/OIS/AP of promptseg.evaluate.edges, on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from promptseg.evaluate.edges import average_precision, boundary_counts, evaluate_edges, match_pixels


def _square_outline(size: int = 64, lo: int = 16, hi: int = 48) -> np.ndarray:
    outline = np.zeros((size, size), dtype=bool)
    outline[lo, lo:hi] = outline[hi, lo:hi] = True
    outline[lo:hi, lo] = outline[lo:hi, hi] = True
    return outline


def test_perfect_and_shifted_predictions_score_one():
    gt = _square_outline()
    perfect = evaluate_edges([gt.astype(np.float32)], [gt])
    assert perfect.ods_f == pytest.approx(1.0) and perfect.ois_f == pytest.approx(1.0)
    # One pixel off, within 0.0075 * diagonal (0.68 px at 64x64 is too tight; use 0.02 -> 1.8 px).
    shifted = np.roll(gt, 1, axis=1).astype(np.float32)
    assert evaluate_edges([shifted], [gt]).ods_f < 0.7
    scores = evaluate_edges([shifted], [gt], max_dist=0.02)
    # Greedy nearest-first matching loses a pixel at each corner that an optimal assignment would pair.
    assert scores.ods_precision >= 0.98 and scores.ods_recall >= 0.98
    line = np.zeros((64, 64), dtype=bool)
    line[30, 5:60] = True
    scores = evaluate_edges([np.roll(line, 1, axis=0).astype(np.float32)], [line], max_dist=0.02)
    assert scores.ods_precision == pytest.approx(1.0) and scores.ods_recall == pytest.approx(1.0)


def test_far_predictions_match_nothing_and_empty_prediction_has_zero_recall():
    gt = _square_outline()
    far = np.roll(gt, 8, axis=0).astype(np.float32) * 0.0
    far[2, 2:10] = 1.0
    scores = evaluate_edges([far], [gt])
    assert scores.ods_recall == 0.0 and scores.ods_f == 0.0 and scores.ap == 0.0


def test_matching_is_one_to_one_and_nearest_first():
    gt = np.zeros((20, 20), dtype=bool)
    gt[10, 10] = True
    pred = np.zeros_like(gt)
    pred[10, 11] = pred[10, 9] = pred[10, 10] = True  # three candidates for one ground-truth pixel
    matched_pred, matched_gt = match_pixels(pred, gt, radius=1.5)
    assert matched_pred.sum() == 1 and matched_pred[10, 10] and matched_gt[10, 10]
    counts = boundary_counts(pred, [gt], max_dist=1.5 / np.hypot(20, 20))
    assert (counts.matched_pred, counts.pred, counts.matched_gt, counts.gt) == (1, 3, 1, 1)


def test_several_annotators_pool_recall_and_accept_any_match():
    a = np.zeros((30, 30), dtype=bool)
    a[10, 5:25] = True
    b = np.zeros_like(a)
    b[20, 5:25] = True
    pred = a.copy()
    counts = boundary_counts(pred, [a, b])
    assert counts.matched_pred == counts.pred == 20
    assert (counts.matched_gt, counts.gt) == (20, 40)


def test_ods_uses_one_threshold_and_ois_the_best_per_image():
    gt = _square_outline()
    distractors = np.zeros(gt.shape, dtype=np.float32)
    distractors[2:6, 2:60] = 1.0
    # Image A: edges 0.9, distractors 0.5 (perfect above 0.5); image B: edges 0.4, distractors 0.2 (perfect in (0.2, 0.4]).
    first = gt * 0.9 + distractors * 0.5
    second = gt * 0.4 + distractors * 0.2
    scores = evaluate_edges([first, second], [gt, gt])
    assert scores.ois_f == pytest.approx(1.0)  # each image alone has a perfect threshold
    assert scores.ods_f < scores.ois_f
    print(f"ODS F {scores.ods_f:.3f} at {scores.ods_threshold:.2f}, OIS F {scores.ois_f:.3f}, AP {scores.ap:.3f}")


def test_average_precision_of_a_flat_curve():
    recall = np.array([0.0, 0.5, 1.0])
    precision = np.array([0.8, 0.8, 0.8])
    assert average_precision(recall, precision) == pytest.approx(0.808, abs=1e-6)  # 101 points * 0.8 * 0.01


def test_bad_input_is_named_and_inputs_are_not_modified():
    gt = _square_outline()
    pred = gt.astype(np.float32)
    before = pred.copy()
    evaluate_edges([pred], [gt])
    assert np.array_equal(pred, before)
    with pytest.raises(ValueError, match="one ground truth per edge map"):
        evaluate_edges([pred, pred], [gt])
    with pytest.raises(ValueError, match="ground truth is"):
        evaluate_edges([pred], [gt[:10]])
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        evaluate_edges([pred[None]], [gt])
