"""Crop geometry: boxes, points and masks found in a crop, moved to the frame of the whole image,
and the XYWH form records give boxes in.

A crop box is XYXY in image pixels, ``[x0, y0, x1, y1]`` with x1, y1 exclusive (as
:func:`promptseg.amg.grids.generate_crop_boxes` makes them). The functions keep the
official ``segment_anything.utils.amg`` names, arguments and results.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn.functional as F


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """(..., 4) XYXY boxes in the crop's frame -> the same boxes in the image's frame.

    The offset is a (1, 4) int64 tensor, so a single (4,) box comes back as (1, 4) and integer
    boxes as int64, as officially.
    """
    x0, y0 = crop_box[0], crop_box[1]
    return boxes + torch.tensor([[x0, y0, x0, y0]], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """(..., 2) (x, y) points in the crop's frame -> the image's frame (offset as in :func:`uncrop_boxes_xyxy`)."""
    return points + torch.tensor([[crop_box[0], crop_box[1]]], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """(..., h, w) masks of a crop -> (..., orig_h, orig_w), zero outside the crop.

    A crop covering the whole image returns ``masks`` itself.
    """
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    return F.pad(masks, (x0, orig_w - x1, y0, orig_h - y1), value=0)


def box_xyxy_to_xywh(box_xyxy: Any) -> Any:
    """One XYXY box -> XYWH: a copy of ``box_xyxy`` (a (4,) tensor, array or list) with its last
    two entries replaced by the width and height. The input is left unchanged."""
    box_xywh = copy.deepcopy(box_xyxy)
    for size_index in (2, 3):
        box_xywh[size_index] = box_xyxy[size_index] - box_xyxy[size_index - 2]
    return box_xywh
