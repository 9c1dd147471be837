"""SAM 2's mask generator on promptseg's device-resident pipeline (promptseg.automatic): the same
records from SAM2AutomaticMaskGenerator, from SamAutomaticMaskGenerator given a SAM 2 model, and
from the official step-by-step methods (``_generate_masks``) that SAM2AutomaticMaskGenerator keeps
for code that calls them, with crops and the low-res hole / sprinkle clean-up. Hiera-t at 256 with
random weights (every mask spans the crop, so NMS is off: thresholds at 1.0), filters at 0."""

from __future__ import annotations

import numpy as np
import pytest

from promptseg import SamAutomaticMaskGenerator
from promptseg.amg.crops import box_xyxy_to_xywh
from promptseg.io.rle import rle_to_mask
from promptseg.sam2 import SAM2AutomaticMaskGenerator

LOOSE = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0, "crop_nms_thresh": 1.0}


@pytest.fixture(scope="module")
def picture(images):
    return images["dog.jpg"][100:300, 200:500]


def test_sam_generator_on_a_sam2_model_gives_sam2_records(sam2_small, picture):
    expected = SAM2AutomaticMaskGenerator(sam2_small, points_per_side=4, **LOOSE).generate(picture)
    generator = SamAutomaticMaskGenerator(sam2_small, points_per_side=4, **LOOSE)
    actual = generator.generate(picture)
    assert len(actual) == len(expected) > 10
    for ours, theirs in zip(actual, expected):
        assert np.array_equal(ours.pop("segmentation"), theirs.pop("segmentation"))
        assert ours == theirs
        assert all(isinstance(value, float) for value in ours["bbox"] + ours["crop_box"] + ours["point_coords"][0])
    assert generator.last_filter_counts[0].kept == len(actual)
    batch = generator.generate_batch([picture, picture[:120, :150]], batch_size=2)
    alone = generator.generate(picture[:120, :150])
    assert len(batch[0]) == len(actual) and len(batch[1]) == len(alone)
    assert all(a["predicted_iou"] == b["predicted_iou"] for a, b in zip(batch[1], alone))


@pytest.mark.parametrize(
    "options",
    [
        {"crop_n_layers": 1, "min_mask_region_area": 15, "output_mode": "uncompressed_rle"},
        {"multimask_output": False, "use_m2m": True, "mask_threshold": 0.3, "points_per_batch": 5},
    ],
    ids=["crops and clean-up", "single mask m2m threshold"],
)
def test_pipeline_equals_the_official_steps(sam2_small, picture, options):
    """generate() (the device pipeline) against the records the official _generate_masks steps give."""
    generator = SAM2AutomaticMaskGenerator(sam2_small, points_per_side=3, **LOOSE, **options)
    records = generator.generate(picture)
    data = generator._generate_masks(picture)
    assert len(records) == len(data["rles"]) > 5
    for index, record in enumerate(records):
        segmentation = record["segmentation"]
        mask = rle_to_mask(segmentation) if isinstance(segmentation, dict) else segmentation
        assert np.array_equal(mask, rle_to_mask(data["rles"][index])), index
        assert record["bbox"] == box_xyxy_to_xywh(data["boxes"][index]).tolist()
        assert record["point_coords"] == [data["points"][index].tolist()]
        assert record["crop_box"] == box_xyxy_to_xywh(data["crop_boxes"][index]).tolist()
        assert abs(record["predicted_iou"] - data["iou_preds"][index].item()) <= 1e-6
        assert abs(record["stability_score"] - data["stability_score"][index].item()) <= 1e-6
    if options.get("crop_n_layers"):  # random masks span their crop: the crop layer's are cut by its edges
        assert generator.last_filter_counts[0].crop_edge > 0
