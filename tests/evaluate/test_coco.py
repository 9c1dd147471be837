"""The COCO evaluations of proposals (AR) and instances (mask AP) on results whose answers are known
(the synthetic COCO writer itself: tests/datasets/test_synthetic_coco.py)."""

from __future__ import annotations

import copy
import json

import pytest

from promptseg.data.synthetic_coco import write_synthetic_coco
from promptseg.evaluate import evaluate_instances, evaluate_proposals
from tests.datasets.test_synthetic_coco import SEEDS

COCO = pytest.importorskip("pycocotools.coco").COCO


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic_coco")
    return folder, write_synthetic_coco(folder, SEEDS)


def _ground_truth_as_results(path, score=1.0):
    dataset = json.loads(path.read_text())
    return dataset, [
        {"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"], "score": score}
        for a in dataset["annotations"]
    ]


def test_perfect_results_score_one_and_no_results_score_zero(dataset):
    _, path = dataset
    ground_truth, results = _ground_truth_as_results(path)
    kept = copy.deepcopy(results)
    instances = evaluate_instances(path, results)
    proposals = evaluate_proposals(ground_truth, results)
    print(f"perfect: AP {instances['AP']:.3f}, AR@100 {proposals['AR@100']:.3f}")
    assert instances["AP"] == pytest.approx(1.0) and instances["AP50"] == pytest.approx(1.0)
    assert proposals["AR@100"] == pytest.approx(1.0) and proposals["AR@1000"] == pytest.approx(1.0)
    assert results == kept  # inputs are not modified
    assert evaluate_instances(path, [])["AP"] == 0.0
    assert evaluate_proposals(path, [])["AR@100"] == 0.0


def test_proposals_ignore_categories_and_instances_do_not(dataset):
    _, path = dataset
    _, results = _ground_truth_as_results(path)
    relabelled = [{**r, "category_id": 1} for r in results]
    assert evaluate_proposals(path, relabelled)["AR@100"] == pytest.approx(1.0)
    assert evaluate_instances(path, relabelled)["AP"] < 0.9


def test_half_of_the_objects_give_half_the_recall(dataset):
    _, path = dataset
    _, results = _ground_truth_as_results(path)
    half = results[::2]
    recall = evaluate_proposals(path, half)["AR@100"]
    assert recall == pytest.approx(len(half) / len(results))


def test_bad_results_are_named(dataset):
    _, path = dataset
    with pytest.raises(ValueError, match="lacks"):
        evaluate_instances(path, [{"image_id": 1, "score": 1.0}])
    with pytest.raises(ValueError, match="image_id 99"):
        evaluate_proposals(path, [{"image_id": 99, "segmentation": {}, "score": 1.0}])
    with pytest.raises(ValueError, match="COCO instances dataset"):
        evaluate_instances({"images": []}, [])
    with pytest.raises(FileNotFoundError, match="results file not found"):
        evaluate_instances(path, path.parent / "missing.json")
