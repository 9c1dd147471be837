"""The helpers of ``segment_anything.utils.amg`` under their official names and signatures.

The implementations live in :mod:`promptseg.amg` and run on the device of
their tensor inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from promptseg.amg.filters import near_crop_edge as is_box_near_crop_edge
from promptseg.amg.filters import stability_score as calculate_stability_score
from promptseg.amg.grids import build_all_layer_point_grids, build_point_grid, generate_crop_boxes
from promptseg.amg.regions import clear_small_islands, fill_small_holes
from promptseg.amg.rle import area_from_rle, coco_encode_rle, encode_rle, rle_to_mask
from promptseg.postprocess import mask_boxes_xyxy as batched_mask_to_box

__all__ = [
    "area_from_rle",
    "batched_mask_to_box",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_encode_rle",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_to_rle_pytorch",
    "remove_small_regions",
    "rle_to_mask",
]

REGION_MODES = ("holes", "islands")


def mask_to_rle_pytorch(tensor: torch.Tensor) -> list[dict[str, Any]]:
    """(B, H, W) bool masks -> B uncompressed RLEs ``{"size": [H, W], "counts": [...]}``."""
    return encode_rle(tensor).to_uncompressed()


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill small holes (``mode='holes'``) or remove small islands (``'islands'``) of an (H, W) bool mask.

    Returns the new mask (the input itself when nothing changed) and whether it changed.
    """
    if mode not in REGION_MODES:
        raise ValueError(f"mode must be one of {list(REGION_MODES)}, got {mode!r}")
    masks = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))[None]
    if mode == "holes":
        cleaned, changed = fill_small_holes(masks, area_thresh)
    else:
        cleaned, changed = clear_small_islands(masks, area_thresh)
    if not bool(changed[0]):
        return mask, False
    return cleaned[0].numpy(), True
