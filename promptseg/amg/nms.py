"""Non-maximum suppression of duplicate masks by their boxes (torchvision's batched NMS, one class)."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms


def nms_keep(boxes_xyxy: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes NMS keeps, by decreasing score.

    The call is the official one (integer boxes as float, a single category),
    so ties resolve as they do there.

    Args:
        boxes_xyxy: (N, 4) boxes; scores: (N,) float, on the same device.
    Returns:
        (K,) int64 indices into the N boxes.
    """
    categories = torch.zeros(len(boxes_xyxy), device=boxes_xyxy.device)
    return batched_nms(boxes_xyxy.float(), scores, categories, iou_threshold=iou_threshold)


def crop_nms_keep(boxes_xyxy: torch.Tensor, crop_areas: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS between masks of different crops that prefers masks from smaller crops.

    Args:
        boxes_xyxy: (N, 4) boxes in the image frame.
        crop_areas: (N,) int64 area in pixels of the crop each mask came from.
    Returns:
        (K,) int64 indices of the kept masks.
    """
    return nms_keep(boxes_xyxy, 1 / crop_areas, iou_threshold)
