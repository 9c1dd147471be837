"""``sam2.utils.amg`` under its official path: the mask generator's helpers. The official SAM 2
module is SAM's with one change, which :class:`MaskData` carries: ``to_numpy`` casts tensors to
float32 first; everything else is :mod:`promptseg.amg.official`'s (the official names and arguments, shared with
``promptseg.utils.amg``)."""

from __future__ import annotations

import torch

from promptseg.amg.batching import MaskData as _SamMaskData
from promptseg.amg.official import (
    area_from_rle,
    batch_iterator,
    batched_mask_to_box,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    build_point_grid,
    calculate_stability_score,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)

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


class MaskData(_SamMaskData):
    """Named columns of per-mask values (see :class:`promptseg.amg.batching.MaskData`); :meth:`to_numpy`
    casts tensors to float32 before moving them to the host, as SAM 2 does (so boxes become float)."""

    def to_numpy(self) -> None:
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                self[key] = value.float().detach().cpu().numpy()
