"""Zero-shot instances from boxes: COCO results keeping score and category, the mask choice, detections
validation, and the measured acceptance test: with ground-truth boxes as detections on held-out synthetic
scenes, the bundled model's mask AP beats filling each box, and is at least 0.4."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from promptseg.amg.rle import encode_rle
from promptseg.bundled import build_bundled_sam
from promptseg.data.synthetic import HELD_OUT_SEED, generate_scene
from promptseg.data.synthetic_coco import CATEGORIES, scene_annotations
from promptseg.evaluate import evaluate_instances
from promptseg.zeroshot import BoxInstanceSegmenter, check_detections
from promptseg.zeroshot.baselines import box_masks

mask_utils = pytest.importorskip("pycocotools.mask")

INSTANCE_SCENES = [(HELD_OUT_SEED, 14, 200 + index) for index in range(8)]


@pytest.fixture(scope="module")
def model():
    return build_bundled_sam()


def _dataset(scenes):
    images, annotations = [], []
    for image_id, scene in enumerate(scenes, start=1):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 256, "width": 256})
        annotations.extend(scene_annotations(scene, image_id, len(annotations) + 1))
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def _detections(dataset):
    return [
        {"image_id": a["image_id"], "bbox": a["bbox"], "score": 1.0, "category_id": a["category_id"]}
        for a in dataset["annotations"]
    ]


def test_results_keep_score_category_and_order(model):
    scene = generate_scene((HELD_OUT_SEED, 14, 97))
    detections = [
        {"image_id": 7, "bbox": [10, 20, 60, 40], "score": 0.8, "category_id": 3},
        {"image_id": 7, "bbox": [100, 90, 50, 80], "score": 0.3, "category_id": 1},
    ]
    kept = [dict(d) for d in detections]
    segmenter = BoxInstanceSegmenter(model)
    results = segmenter.segment_image(scene.image, detections)
    assert detections == kept
    assert [(r["image_id"], r["category_id"], r["score"], r["bbox"]) for r in results] == [
        (7, 3, 0.8, [10.0, 20.0, 60.0, 40.0]), (7, 1, 0.3, [100.0, 90.0, 50.0, 80.0])
    ]
    masks = [mask_utils.decode(r["segmentation"]).astype(bool) for r in results]
    assert masks[0].shape == (256, 256) and masks[0].any()
    # Single-mask output is the predictor's mask 0 for the box.
    segmenter.predictor.set_image(scene.image)
    expected, scores, _ = segmenter.predictor.predict(box=np.array([10, 20, 70, 60]), multimask_output=False)
    assert np.array_equal(masks[0], expected[0]) and results[0]["predicted_iou"] == pytest.approx(float(scores[0]), abs=1e-6)
    best = BoxInstanceSegmenter(model, mask_choice="best", score="detection_x_iou").segment_image(scene.image, detections)
    assert best[0]["score"] == pytest.approx(0.8 * best[0]["predicted_iou"])
    multi, multi_scores, _ = segmenter.predictor.predict(box=np.array([10, 20, 70, 60]), multimask_output=True)
    assert np.array_equal(mask_utils.decode(best[0]["segmentation"]).astype(bool), multi[multi_scores.argmax()])
    # An image without detections gives no results; the others are unaffected.
    both = segmenter.segment_images([scene.image, scene.image], [[], detections])
    assert both[0] == [] and [r["score"] for r in both[1]] == [0.8, 0.3]


def test_detections_are_validated():
    good = {"image_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5, "category_id": 2}
    assert check_detections([good])[0]["bbox"] == [0.0, 0.0, 5.0, 5.0]
    with pytest.raises(TypeError, match="list of COCO detection dicts"):
        check_detections(good)
    with pytest.raises(ValueError, match=r"lacks \['category_id'\]"):
        check_detections([{k: v for k, v in good.items() if k != "category_id"}])
    with pytest.raises(ValueError, match="width, height >= 0"):
        check_detections([{**good, "bbox": [0, 0, -1, 5]}])
    with pytest.raises(ValueError, match=r"\[x, y, width, height\]"):
        check_detections([{**good, "bbox": [0, 0, 5]}])
    with pytest.raises(TypeError, match="image_id must be an int"):
        check_detections([{**good, "image_id": "a.jpg"}])
    with pytest.raises(ValueError, match="mask_choice"):
        BoxInstanceSegmenter(None, mask_choice="all")


def test_instances_from_ground_truth_boxes_beat_filled_boxes(model):
    scenes = [generate_scene(seed) for seed in INSTANCE_SCENES]
    dataset = _dataset(scenes)
    detections = _detections(dataset)
    start = time.perf_counter()
    ours = BoxInstanceSegmenter(model).segment_detections(detections, lambda image_id: scenes[image_id - 1].image)
    seconds = time.perf_counter() - start
    filled = []
    for detection in detections:
        x, y, width, height = detection["bbox"]
        mask = box_masks(np.array([[x, y, x + width, y + height]]), 256, 256)
        filled.append({**detection, "segmentation": encode_rle(torch.from_numpy(mask)).to_coco()[0]})
    sam, boxes = evaluate_instances(dataset, ours), evaluate_instances(dataset, filled)
    print(
        f"\ninstances from {len(detections)} ground-truth boxes on {len(scenes)} held-out scenes ({seconds:.1f} s): "
        f"SAM mask AP {sam['AP']:.3f} (AP50 {sam['AP50']:.3f}, AP75 {sam['AP75']:.3f}) | "
        f"filled boxes mask AP {boxes['AP']:.3f} (AP50 {boxes['AP50']:.3f}, AP75 {boxes['AP75']:.3f})"
    )
    assert sam["AP"] > boxes["AP"]
    assert sam["AP"] >= 0.4
