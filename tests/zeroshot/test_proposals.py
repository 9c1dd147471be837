"""Zero-shot object proposals: ranking, k, options and bad input, and the measured acceptance test:
on held-out synthetic scenes the bundled model's AR@100 beats as many sliding-window boxes (as masks)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from promptseg.amg.rle import encode_rle
from promptseg.bundled import build_bundled_sam
from promptseg.data.synthetic import HELD_OUT_SEED, generate_scene
from promptseg.data.synthetic_coco import CATEGORIES, scene_annotations
from promptseg.evaluate import evaluate_proposals
from promptseg.zeroshot import ProposalGenerator, proposals
from promptseg.zeroshot.baselines import box_masks, sliding_window_boxes

pytest.importorskip("pycocotools")

PROPOSAL_SCENES = [(HELD_OUT_SEED, 14, 100 + index) for index in range(6)]
POINTS_PER_SIDE = 8  # 64 prompts per 256 px scene (the CLI's default is 32 x 32)


@pytest.fixture(scope="module")
def model():
    return build_bundled_sam()


def _ground_truth(scenes):
    images, annotations = [], []
    for image_id, scene in enumerate(scenes, start=1):
        height, width = scene.image.shape[:2]
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width})
        annotations.extend(scene_annotations(scene, image_id, len(annotations) + 1))
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def test_proposals_are_ranked_and_capped(model):
    image = generate_scene((HELD_OUT_SEED, 14, 98)).image
    generator = ProposalGenerator(model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    ranked = generator(image, k=1000)
    assert len(ranked) > 3
    scores = [p["score"] for p in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(p["score"] == p["predicted_iou"] for p in ranked)
    assert {"segmentation", "bbox", "area", "stability_score"} <= ranked[0].keys()
    assert isinstance(ranked[0]["segmentation"]["counts"], str)
    top = generator(image, k=2)
    assert [p["score"] for p in top] == scores[:2]
    by_product = ProposalGenerator(model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, score="product")
    assert all(p["score"] == pytest.approx(p["predicted_iou"] * p["stability_score"]) for p in by_product(image))
    assert len(proposals(image, k=3, model=model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)) == 3
    with pytest.raises(ValueError, match="k must be"):
        generator(image, k=0)
    with pytest.raises(ValueError, match="score must be one of"):
        ProposalGenerator(model, score="area")


def test_sliding_window_boxes_fill_the_count_and_stay_inside():
    boxes = sliding_window_boxes(256, 200, 100)
    assert boxes.shape == (100, 4)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 200 + 1e-6).all() and (boxes[:, 3] <= 256 + 1e-6).all()
    assert len({tuple(np.round(b)) for b in boxes}) == 100
    masks = box_masks(np.array([[2, 3, 6, 5]]), 8, 8)
    assert masks.sum() == 4 * 2 and masks[0, 3, 2] and not masks[0, 5, 2]


def test_proposals_beat_a_sliding_window(model):
    scenes = [generate_scene(seed) for seed in PROPOSAL_SCENES]
    truth = _ground_truth(scenes)
    start = time.perf_counter()
    per_image = ProposalGenerator(model, points_per_side=POINTS_PER_SIDE).propose_batch([s.image for s in scenes], k=100)
    seconds = time.perf_counter() - start
    ours = [
        {"image_id": image_id, "category_id": 1, "segmentation": p["segmentation"], "score": p["score"]}
        for image_id, found in enumerate(per_image, start=1)
        for p in found
    ]
    window = []
    for image_id, scene in enumerate(scenes, start=1):
        height, width = scene.image.shape[:2]
        boxes = sliding_window_boxes(height, width, 100)
        rles = encode_rle(torch.from_numpy(box_masks(boxes, height, width))).to_coco()
        window += [
            {"image_id": image_id, "category_id": 1, "segmentation": rle, "score": 1.0 - rank / 100}
            for rank, rle in enumerate(rles)
        ]
    sam, baseline = evaluate_proposals(truth, ours), evaluate_proposals(truth, window)
    print(
        f"\nproposals on {len(scenes)} held-out scenes ({POINTS_PER_SIDE}x{POINTS_PER_SIDE} grid, {seconds:.1f} s, "
        f"{len(ours)} proposals for {len(truth['annotations'])} objects): SAM AR@100 {sam['AR@100']:.3f} "
        f"(small {sam['AR_small@1000']}, medium {sam['AR_medium@1000']}, large {sam['AR_large@1000']}) | "
        f"sliding window of 100 boxes AR@100 {baseline['AR@100']:.3f}"
    )
    assert sam["AR@100"] > baseline["AR@100"]
