"""Quality filters of candidate masks, computed on the masks' device, and the tally of what each
filter removed (:class:`FilterCounts`, which says why a run kept no mask)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

# A box side within this many pixels of a crop side is "cut by the crop" (the official tolerance).
CROP_EDGE_TOLERANCE = 20.0


def near_crop_edge(
    boxes_xyxy: torch.Tensor,
    crop_box: Sequence[int],
    image_box: Sequence[int],
    tolerance: float = CROP_EDGE_TOLERANCE,
) -> torch.Tensor:
    """Which boxes touch a side of their crop that is not also a side of the image.

    Such masks were probably cut by the crop and are dropped.

    Args:
        boxes_xyxy: (N, 4) integer boxes in the crop's frame.
        crop_box, image_box: XYXY of the crop and of the whole image, in image pixels.
    Returns:
        (N,) bool.
    """
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes_xyxy.device)
    image = torch.as_tensor(image_box, dtype=torch.float, device=boxes_xyxy.device)
    boxes = (boxes_xyxy + crop[[0, 1, 0, 1]]).float()
    at_crop_side = torch.isclose(boxes, crop[None], atol=tolerance, rtol=0)
    at_image_side = torch.isclose(boxes, image[None], atol=tolerance, rtol=0)
    return (at_crop_side & ~at_image_side).any(dim=1)


FILTER_STAGES = ("pred_iou", "stability", "crop_edge", "box_nms", "crop_nms", "small_regions")
"""The filters of automatic mask generation, in the order they run; each removes candidate masks."""
_STAGE_TEXT = {
    "pred_iou": "predicted IoU (pred_iou_thresh)",
    "stability": "stability score (stability_score_thresh)",
    "crop_edge": "touching a crop edge",
    "box_nms": "box NMS within a crop (box_nms_thresh)",
    "crop_nms": "box NMS between crops (crop_nms_thresh)",
    "small_regions": "NMS after the small-region clean-up (min_mask_region_area)",
}


@dataclass(frozen=True)
class FilterCounts:
    """How the candidate masks of one image fared in automatic mask generation.

    A mask counts once, at the first filter it fails, in the order of :data:`FILTER_STAGES`.

    Attributes:
        candidates: masks decoded (3 per grid point per crop).
        pred_iou, stability, crop_edge, box_nms, crop_nms, small_regions: masks removed by each filter.
        kept: masks returned.
    """

    candidates: int = 0
    pred_iou: int = 0
    stability: int = 0
    crop_edge: int = 0
    box_nms: int = 0
    crop_nms: int = 0
    small_regions: int = 0
    kept: int = 0

    def removed(self) -> dict[str, int]:
        """Filter name -> masks it removed, for every filter of :data:`FILTER_STAGES`."""
        return {stage: getattr(self, stage) for stage in FILTER_STAGES}

    def summary(self) -> str:
        """One line, e.g. ``0 of 3072 candidate masks kept; removed: 3050 by predicted IoU
        (pred_iou_thresh), 22 by stability score (stability_score_thresh)``."""
        removed = [f"{count} by {_STAGE_TEXT[stage]}" for stage, count in self.removed().items() if count]
        return f"{self.kept} of {self.candidates} candidate masks kept" + (
            f"; removed: {', '.join(removed)}" if removed else ""
        )


class FilterTally:
    """Counts, for one image, the candidates each filter removes. The quality filters' counts stay
    on the device until :meth:`counts` (one transfer per image)."""

    def __init__(self) -> None:
        self._quality: Optional[torch.Tensor] = None  # (3,) int64: pred_iou, stability, crop_edge
        self._candidates = 0
        self._nms = dict.fromkeys(FILTER_STAGES[3:], 0)

    def add_quality(self, candidates: int, removed: torch.Tensor) -> None:
        """``candidates`` masks met the quality filters, which removed ``removed`` ((3,) int64, on
        the masks' device: by predicted IoU, by stability, by crop edge; see :func:`quality_keep`)."""
        self._candidates += candidates
        self._quality = removed if self._quality is None else self._quality + removed

    def add_removed(self, stage: str, count: int) -> None:
        """``count`` more masks removed by the NMS ``stage`` (box_nms, crop_nms or small_regions)."""
        self._nms[stage] += count

    def counts(self, kept: int) -> FilterCounts:
        """The tally as :class:`FilterCounts`, with ``kept`` masks returned."""
        quality = [0, 0, 0] if self._quality is None else self._quality.tolist()
        return FilterCounts(self._candidates, *quality, **self._nms, kept=kept)


def quality_keep(
    iou: torch.Tensor,
    stability: torch.Tensor,
    boxes: torch.Tensor,
    crop_box: Sequence[int],
    image_box: Sequence[int],
    pred_iou_thresh: float,
    stability_score_thresh: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which masks pass the quality filters of automatic mask generation, and how many each removed.

    A mask is kept when its predicted IoU is above ``pred_iou_thresh`` (no filter at 0 or below),
    its stability score at least ``stability_score_thresh`` (likewise) and its box not cut by the
    crop (:func:`near_crop_edge`).

    Args:
        iou, stability: (N,) predicted IoU and stability scores.
        boxes: (N, 4) integer XYXY boxes in the crop's frame.
        crop_box, image_box: XYXY of the crop and of the whole image, in image pixels.
    Returns:
        (N,) bool keep, and (3,) int64 masks removed by predicted IoU, by stability (among those
        that passed the IoU filter) and by the crop edge (among those that passed both), on the masks' device.
    """
    passed_iou = iou > pred_iou_thresh if pred_iou_thresh > 0.0 else torch.ones_like(iou, dtype=torch.bool)
    passed_stability = (
        stability >= stability_score_thresh if stability_score_thresh > 0.0 else torch.ones_like(passed_iou)
    )
    passed_quality = passed_iou & passed_stability
    keep = passed_quality & ~near_crop_edge(boxes, crop_box, image_box)
    removed = torch.stack([(~passed_iou).sum(), (passed_iou & ~passed_stability).sum(), (passed_quality & ~keep).sum()])
    return keep, removed
