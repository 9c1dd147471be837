"""Quality measures and filters of candidate masks, computed on the masks' device."""

from __future__ import annotations

from typing import Sequence

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
