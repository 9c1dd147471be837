"""SamAutomaticMaskGenerator (promptseg/automatic.py): generate_batch against generate, the fused CUDA
branches on their references, inputs left alone, bf16 models, bad settings and images, and
``postprocess_small_regions`` against the official static method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import promptseg
from promptseg.build import construct_sam
from tests._support import TINY

SMALL = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return construct_sam(TINY)


def _assert_same_records(expected: list[dict], actual: list[dict]) -> None:
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert np.array_equal(a["segmentation"], b["segmentation"])
        a_rest, b_rest = ({k: v for k, v in r.items() if k != "segmentation"} for r in (a, b))
        assert a_rest == b_rest


def test_generate_batch_equals_generate_per_image(tiny_model, images):
    """Crops of several images share encoder batches (batch_size=3 with 5 crops per image)."""
    settings = {**SMALL, "points_per_side": 3, "crop_n_layers": 1, "box_nms_thresh": 1.0}
    generator = promptseg.SamAutomaticMaskGenerator(tiny_model, **settings)
    batch = [images["dog.jpg"][:320, :480], images["groceries.jpg"][:300, :450]]
    results = generator.generate_batch(batch, batch_size=3)
    assert len(results) == 2 and all(len(records) > 0 for records in results)
    for image, records in zip(batch, results):
        _assert_same_records(generator.generate(image), records)
    assert generator.generate_batch([]) == []


def _by_score(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda record: record["predicted_iou"])


def test_fused_cuda_branches_match_module_path(monkeypatch, tiny_model, images):
    """The branches taken on a CUDA bf16 model with kernels, run here on their PyTorch references:
    decoding through the fused path's image table, and measuring masks with three post-processing
    passes. They must give the records of the model's own modules."""
    import promptseg.decoders.base as decoder_base

    from promptseg.decoders import FusedDecoder

    generator = promptseg.SamAutomaticMaskGenerator(tiny_model, **SMALL, box_nms_thresh=1.0, points_per_batch=7)
    image = images["groceries.jpg"][:300, :450]
    expected = generator.generate(image)
    fused = promptseg.SamAutomaticMaskGenerator(
        tiny_model, **SMALL, box_nms_thresh=1.0, points_per_batch=7, decoder=FusedDecoder(tiny_model)
    )
    monkeypatch.setattr(decoder_base, "kernel_available", lambda name, *tensors, **kwargs: name == "mask_postprocess")
    actual = fused.generate(image)
    assert len(actual) == len(expected) == 4 * 4 * 3
    for a, b in zip(_by_score(expected), _by_score(actual)):
        assert (a["segmentation"] != b["segmentation"]).mean() < 1e-3
        assert abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-5
        assert abs(np.nan_to_num(a["stability_score"] - b["stability_score"])) < 1e-3


def test_inputs_are_not_modified(tiny_model, images):
    image = images["dog.jpg"].copy()
    grids = [np.array([[0.25, 0.5], [0.75, 0.5]], dtype=np.float32)]
    grid_copy = grids[0].copy()
    generator = promptseg.SamAutomaticMaskGenerator(
        tiny_model, points_per_side=None, point_grids=grids, output_mode="coco_rle"
    )
    records = generator.generate(image)
    assert np.array_equal(image, images["dog.jpg"]) and np.array_equal(grids[0], grid_copy)
    assert {tuple(r["point_coords"][0]) for r in records} <= {(200.0, 267.0), (600.0, 267.0)}


def test_bfloat16_model_runs(images):
    """The official generator cannot run a bf16 model (numpy has no bfloat16); ours can."""
    model = construct_sam(TINY).to(torch.bfloat16)
    records = promptseg.SamAutomaticMaskGenerator(model, **SMALL).generate(images["dog.jpg"][:200, :300])
    assert records and all(isinstance(r["predicted_iou"], float) for r in records)


@pytest.mark.parametrize(
    "settings, error, pattern",
    [
        ({"output_mode": "polygons"}, ValueError, r"output_mode must be one of .* got 'polygons'"),
        ({"point_grids": [np.zeros((4, 2))]}, ValueError, "exactly one of points_per_side and point_grids"),
        ({"points_per_side": None}, ValueError, "exactly one of points_per_side and point_grids"),
        ({"points_per_side": None, "point_grids": [np.zeros((4, 3))]}, ValueError, r"point_grids\[0\] must have shape"),
        ({"points_per_side": None, "point_grids": [np.zeros((4, 2))], "crop_n_layers": 1}, ValueError, "one grid per"),
        ({"points_per_side": 2, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2}, ValueError, "0 points per"),
        ({"points_per_batch": 0}, ValueError, "points_per_batch must be >= 1, got 0"),
        ({"points_per_side": 8.0}, TypeError, "points_per_side must be an int, got float"),
        ({"pred_iou_thresh": "high"}, TypeError, "pred_iou_thresh must be a real number, got str"),
    ],
)
def test_bad_settings(tiny_model, settings, error, pattern):
    with pytest.raises(error, match=pattern):
        promptseg.SamAutomaticMaskGenerator(tiny_model, **settings)


@pytest.mark.parametrize(
    "image, error, pattern",
    [
        (np.zeros((20, 30), dtype=np.uint8), ValueError, r"must have shape \(H, W, 3\), got \(20, 30\)"),
        (np.zeros((20, 30, 3), dtype=np.float32), TypeError, "dtype uint8 .* got float32"),
        ([[0, 0, 0]], TypeError, "numpy array .* got list"),
    ],
)
def test_bad_images(tiny_model, image, error, pattern):
    generator = promptseg.SamAutomaticMaskGenerator(tiny_model, **SMALL)
    with pytest.raises(error, match=pattern):
        generator.generate(image)
    with pytest.raises(error, match=r"images\[1\]: .*" + pattern):
        generator.generate_batch([np.zeros((20, 30, 3), dtype=np.uint8), image])


def test_generate_batch_rejects_one_image(tiny_model):
    generator = promptseg.SamAutomaticMaskGenerator(tiny_model, **SMALL)
    with pytest.raises(TypeError, match="sequence of .* use generate for one image"):
        generator.generate_batch(np.zeros((20, 30, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        generator.generate_batch([], batch_size=0)


def test_postprocess_small_regions_equals_the_official_static_method():
    """``SamAutomaticMaskGenerator.postprocess_small_regions`` on MaskData, as the official one."""
    from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator
    from segment_anything.utils.amg import MaskData as OfficialMaskData
    from segment_anything.utils.amg import batched_mask_to_box, mask_to_rle_pytorch

    from promptseg.amg.batching import MaskData

    generator = torch.Generator().manual_seed(3)
    masks = torch.zeros(6, 40, 50, dtype=torch.bool)
    corners = torch.randint(0, 20, (6, 2), generator=generator).tolist()
    for index, (x0, y0) in enumerate(corners):
        masks[index, y0 : y0 + 15, x0 : x0 + 20] = True
    masks[1, 35:37, 45:47] = True  # a small island
    masks[2, corners[2][1] + 5, corners[2][0] + 5] = False  # a small hole
    masks[3] = masks[2]  # a duplicate
    rles, boxes = mask_to_rle_pytorch(masks), batched_mask_to_box(masks)
    official = OfficialGenerator.postprocess_small_regions(OfficialMaskData(rles=list(rles), boxes=boxes.clone()), 10, 0.7)
    ours = promptseg.SamAutomaticMaskGenerator.postprocess_small_regions(MaskData(rles=list(rles), boxes=boxes.clone()), 10, 0.7)
    assert ours["rles"] == official["rles"] and torch.equal(ours["boxes"], official["boxes"])
