"""The synthetic COCO writer (checked with pycocotools), and the COCO evaluations of proposals (AR)
and instances (mask AP) on results whose answers are known."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from promptseg.data.synthetic import generate_scene
from promptseg.data.synthetic_coco import CATEGORY_NAMES, boundary_map, region_labels, write_synthetic_coco
from promptseg.evaluate import evaluate_instances, evaluate_proposals

COCO = pytest.importorskip("pycocotools.coco").COCO
SEEDS = [(5, 0), (5, 1), (5, 2)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic_coco")
    return folder, write_synthetic_coco(folder, SEEDS)


def test_written_dataset_matches_the_scenes(dataset):
    folder, path = dataset
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    for image_id, seed in zip([1, 2, 3], SEEDS):
        scene = generate_scene(seed)
        info = coco.loadImgs([image_id])[0]
        assert info["file_name"] == f"{image_id:012d}.png"
        assert (folder / "images" / info["file_name"]).is_file()
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(annotations) == len(scene.masks)
        for annotation, mask, kind in zip(annotations, scene.masks, scene.kinds):
            assert np.array_equal(coco.annToMask(annotation).astype(bool), mask)
            assert annotation["area"] == mask.sum()
            assert CATEGORY_NAMES[annotation["category_id"] - 1] == kind
            ys, xs = np.nonzero(mask)
            assert annotation["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        from PIL import Image

        boundaries = np.asarray(Image.open(folder / "boundaries" / info["file_name"])) > 0
        assert np.array_equal(boundaries, boundary_map(region_labels(scene)))


def test_boundary_map_marks_each_region_change_once():
    labels = np.zeros((6, 6), dtype=np.int64)
    labels[2:4, 2:4] = 1
    edges = boundary_map(labels)
    # The 2x2 square: 2 pixels left of it, 2 above it, and its own right column and bottom row (3).
    assert edges.sum() == 7 and edges[1, 2] and edges[2, 1] and edges[3, 3] and not edges[2, 2] and not edges[0, 0]
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        boundary_map(labels[None])


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
