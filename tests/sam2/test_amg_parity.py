"""promptseg.sam2.SAM2AutomaticMaskGenerator against the official one: Hiera-t with identical random
weights, dog.jpg (534 x 800), fp32 on the CPU.

With random weights every mask is speckle over the whole image, so box NMS would keep one mask and
compare little; the cases therefore lower the thresholds so that every candidate survives
(predicted IoU and stability 0, box NMS at 1.0) and compare all of them: the same count, the same
order (by predicted IoU, as NMS sorts them), every mask with IoU >= 0.99 (measured: identical) and
every record field. One case runs the default pipeline (multimask, binary masks); the other the
mask-to-mask refinement (``use_m2m``) with single-mask output and COCO RLE output. A 4 x 4 grid
keeps it to 48 candidates (one batch).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.sam2._support import OFFICIAL_SAM2_MISSING

OfficialGenerator = pytest.importorskip(
    "sam2.automatic_mask_generator", reason=OFFICIAL_SAM2_MISSING
).SAM2AutomaticMaskGenerator
mask_utils = pytest.importorskip("pycocotools.mask", reason="pycocotools is not installed")

from promptseg.sam2 import SAM2AutomaticMaskGenerator  # noqa: E402

RECORD_KEYS = ["segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"]
MATCH_IOU = 0.99
SCORE_ERR = 1e-5
STABILITY_ERR = 1e-3  # a count ratio: a pixel or two at the cut-offs may move
KEEP_ALL = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
CASES = {
    "multimask binary": {"points_per_side": 4, **KEEP_ALL},
    "m2m single coco_rle": {
        "points_per_side": 3,
        "multimask_output": False,
        "use_m2m": True,
        "output_mode": "coco_rle",
        **KEEP_ALL,
    },
}


def binary(segmentation, output_mode: str) -> np.ndarray:
    return np.asarray(segmentation) if output_mode == "binary_mask" else mask_utils.decode(segmentation).astype(bool)


@pytest.mark.parametrize("case", list(CASES))
def test_generator_matches_official(sam2_tiny_pair, images, case):
    official_model, our_model = sam2_tiny_pair
    kwargs = CASES[case]
    image = images["dog.jpg"]
    expected = OfficialGenerator(official_model, **kwargs).generate(image)
    actual = SAM2AutomaticMaskGenerator(our_model, **kwargs).generate(image)
    points = kwargs["points_per_side"] ** 2 * (3 if kwargs.get("multimask_output", True) else 1)
    assert len(expected) == points, "every candidate should survive the lowered thresholds"
    assert len(actual) == len(expected)
    mode = kwargs.get("output_mode", "binary_mask")
    for index, (ours, theirs) in enumerate(zip(actual, expected)):
        what = f"{case} record {index}"
        assert list(ours) == RECORD_KEYS, what
        if mode == "coco_rle":
            assert isinstance(ours["segmentation"]["counts"], type(theirs["segmentation"]["counts"])), what
        a, b = binary(ours["segmentation"], mode), binary(theirs["segmentation"], mode)
        assert a.shape == b.shape == image.shape[:2], what
        union = np.count_nonzero(a | b)
        assert union == 0 or np.count_nonzero(a & b) / union >= MATCH_IOU, what
        assert ours["point_coords"] == theirs["point_coords"], what
        assert ours["crop_box"] == theirs["crop_box"] and isinstance(ours["crop_box"][0], float), what
        assert abs(ours["predicted_iou"] - theirs["predicted_iou"]) <= SCORE_ERR, what
        assert abs(ours["stability_score"] - theirs["stability_score"]) <= STABILITY_ERR, what
        assert type(ours["area"]) is type(theirs["area"]), what
        assert abs(ours["area"] - theirs["area"]) <= 0.01 * theirs["area"], what
        assert all(isinstance(v, float) for v in ours["bbox"]), what
        assert np.abs(np.subtract(ours["bbox"], theirs["bbox"])).max() <= 2, what
