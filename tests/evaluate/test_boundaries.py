"""BSDS500 ground truth: `groundTruth` .mat files (a cell array of annotator structs) read by
promptseg.evaluate.boundaries and scored by `promptseg evaluate edges`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

scipy_io = pytest.importorskip("scipy.io", reason="BSDS500 .mat ground truth needs scipy")

from promptseg.cli import main  # noqa: E402
from promptseg.evaluate.boundaries import read_boundaries  # noqa: E402


def _annotator(boundaries: np.ndarray) -> dict:
    """One annotator as BSDS500 stores it: a struct with a label map and a 0/1 boundary map."""
    return {"Segmentation": (boundaries.cumsum(axis=1) > 0).astype(np.uint16) + 1,
            "Boundaries": boundaries.astype(np.uint8)}


def _write_bsds(path, annotators: list[np.ndarray]) -> None:
    cells = np.empty((1, len(annotators)), dtype=object)
    for index, boundaries in enumerate(annotators):
        cells[0, index] = _annotator(boundaries)
    scipy_io.savemat(str(path), {"groundTruth": cells})


def _outlines(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    first = np.zeros((size, size), dtype=bool)
    first[10, 10:38] = first[37, 10:38] = first[10:38, 10] = first[10:38, 37] = True
    second = np.zeros((size, size), dtype=bool)
    second[24, 5:43] = True
    return first, second


def test_read_boundaries_gives_each_annotator_of_a_mat_file(tmp_path):
    first, second = _outlines()
    _write_bsds(tmp_path / "12003.mat", [first, second])
    read = read_boundaries(tmp_path / "12003.mat")
    assert len(read) == 2
    assert read[0].dtype == bool and read[0].shape == (48, 48)
    np.testing.assert_array_equal(read[0], first)
    np.testing.assert_array_equal(read[1], second)


def test_evaluate_edges_cli_on_bsds_mat_ground_truth(tmp_path):
    gt_dir, pred_dir = tmp_path / "groundTruth", tmp_path / "edges"
    gt_dir.mkdir()
    pred_dir.mkdir()
    first, second = _outlines()
    _write_bsds(gt_dir / "12003.mat", [first, second])
    # The prediction is the union of both annotators' boundaries: every pixel matches some annotator,
    # so precision is 1; recall pools the annotators and is 1 as well.
    Image.fromarray(((first | second) * 255).astype(np.uint8)).save(pred_dir / "12003.png")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "edges", "--gt", str(gt_dir), "--pred", str(pred_dir), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["ods_f"] == pytest.approx(1.0)
    assert metrics["ois_f"] == pytest.approx(1.0)
    # Only the first annotator drawn: precision stays 1, pooled recall drops below 1.
    Image.fromarray((first * 255).astype(np.uint8)).save(pred_dir / "12003.png")
    assert main(["evaluate", "edges", "--gt", str(gt_dir), "--pred", str(pred_dir), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["ods_precision"] == pytest.approx(1.0)
    assert metrics["ods_recall"] < 0.9
