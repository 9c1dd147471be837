"""The official generator's clean-up of small regions on a :class:`~promptseg.amg.batching.MaskData`."""

from __future__ import annotations

import numpy as np
import torch

from promptseg.amg.batching import MaskData
from promptseg.amg.nms import nms_keep
from promptseg.amg.regions import remove_small_regions_batch
from promptseg.amg.rle import uncompressed_rles
from promptseg.io.rle import rle_to_mask
from promptseg.masks import mask_boxes_xyxy


def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
    """Fill small holes and clear small islands of the masks in ``mask_data["rles"]``, then NMS again.

    As the official ``SamAutomaticMaskGenerator.postprocess_small_regions``: a changed mask scores 0
    and an unchanged one 1 in a box NMS at ``nms_thresh``; survivors that changed get their cleaned
    RLE and box. ``mask_data`` (with ``rles`` and ``boxes``) is filtered in place and returned.
    """
    if len(mask_data["rles"]) == 0:
        return mask_data
    masks = torch.from_numpy(np.stack([rle_to_mask(rle) for rle in mask_data["rles"]]))
    cleaned, changed = remove_small_regions_batch(masks, min_area)
    scores = (~changed).float()
    boxes = mask_boxes_xyxy(cleaned)
    keep = nms_keep(boxes, scores, nms_thresh)
    for index in keep.tolist():
        if bool(changed[index]):
            mask_data["rles"][index] = uncompressed_rles(cleaned[index : index + 1])[0]
            mask_data["boxes"][index] = boxes[index]
    mask_data.filter(keep)
    return mask_data
