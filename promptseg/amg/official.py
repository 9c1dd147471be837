"""The official ``utils.amg`` helper namespace (``segment_anything.utils.amg``; SAM 2's
``sam2.utils.amg`` is the same but for ``MaskData``), each name from the code in
:mod:`promptseg.amg` (or :mod:`promptseg.masks`, :mod:`promptseg.io.rle`).

Where promptseg's name or parameter names differ, the official one is a function here with the
official parameters: ``is_box_near_crop_edge`` calls :func:`promptseg.amg.filters.near_crop_edge`,
``calculate_stability_score`` :func:`promptseg.masks.stability_score`, ``mask_to_rle_pytorch``
:func:`promptseg.amg.rle.uncompressed_rles`; ``batched_mask_to_box`` is
:func:`promptseg.masks.mask_boxes_xyxy`. They run on the device of their tensor inputs.
``promptseg.utils.amg`` and ``promptseg.sam2.utils.amg`` (the official module paths) re-export them.
"""

from __future__ import annotations

from typing import Sequence

import torch

from promptseg.amg.batching import MaskData, batch_iterator
from promptseg.amg.crops import box_xyxy_to_xywh, uncrop_boxes_xyxy, uncrop_masks, uncrop_points
from promptseg.amg.filters import CROP_EDGE_TOLERANCE, near_crop_edge
from promptseg.amg.grids import build_all_layer_point_grids, build_point_grid, generate_crop_boxes
from promptseg.amg.regions import remove_small_regions
from promptseg.amg.rle import UncompressedRle, uncompressed_rles
from promptseg.io.rle import area_from_rle, coco_encode_rle, rle_to_mask
from promptseg.masks import mask_boxes_xyxy as batched_mask_to_box
from promptseg.masks import stability_score

__all__ = [
    "MaskData",
    "area_from_rle",
    "batch_iterator",
    "batched_mask_to_box",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_encode_rle",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_to_rle_pytorch",
    "remove_small_regions",
    "rle_to_mask",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int], atol: float = CROP_EDGE_TOLERANCE
) -> torch.Tensor:
    """(N,) bool: which (N, 4) crop-frame boxes touch a crop side that is not an image side
    (:func:`promptseg.amg.filters.near_crop_edge`)."""
    return near_crop_edge(boxes, crop_box, orig_box, atol)


def calculate_stability_score(masks: torch.Tensor, mask_threshold: float, threshold_offset: float) -> torch.Tensor:
    """(...) stability scores of (..., H, W) mask logits (:func:`promptseg.masks.stability_score`)."""
    return stability_score(masks, mask_threshold, threshold_offset)


def mask_to_rle_pytorch(tensor: torch.Tensor) -> list[UncompressedRle]:
    """Uncompressed COCO RLEs of (B, H, W) bool masks (:func:`promptseg.amg.rle.uncompressed_rles`)."""
    return uncompressed_rles(tensor)
