"""``segment_anything.utils.amg`` under its official path: the official helper names, each a
re-export of the code in :mod:`promptseg.amg` (or :mod:`promptseg.masks`, :mod:`promptseg.io.rle`).

Where promptseg's name differs, the official one is an alias: ``is_box_near_crop_edge`` is
:func:`promptseg.amg.filters.near_crop_edge`, ``calculate_stability_score`` is
:func:`promptseg.masks.stability_score`, ``batched_mask_to_box`` is
:func:`promptseg.masks.mask_boxes_xyxy` and ``mask_to_rle_pytorch`` is
:func:`promptseg.amg.rle.uncompressed_rles`. They run on the device of their tensor inputs.
"""

from promptseg.amg.batching import MaskData, batch_iterator
from promptseg.amg.crops import box_xyxy_to_xywh, uncrop_boxes_xyxy, uncrop_masks, uncrop_points
from promptseg.amg.filters import near_crop_edge as is_box_near_crop_edge
from promptseg.amg.grids import build_all_layer_point_grids, build_point_grid, generate_crop_boxes
from promptseg.amg.regions import remove_small_regions
from promptseg.io.rle import area_from_rle, coco_encode_rle, rle_to_mask
from promptseg.amg.rle import uncompressed_rles as mask_to_rle_pytorch
from promptseg.masks import mask_boxes_xyxy as batched_mask_to_box
from promptseg.masks import stability_score as calculate_stability_score

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
