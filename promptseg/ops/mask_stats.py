"""Measurements of binary masks that the mask post-processing kernel also returns: areas and boxes.

They are the references of the ``boxes`` and ``areas`` outputs of :func:`promptseg.ops.mask_postprocess`.
"""

from __future__ import annotations

import torch


def mask_areas(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool -> (...) int64 number of foreground pixels."""
    return masks.flatten(-2).sum(-1)


def mask_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool -> (..., 4) int64 inclusive XYXY boxes; an empty mask gives [0, 0, 0, 0]."""
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.long, device=masks.device)
    height, width = masks.shape[-2:]
    rows = masks.any(dim=-1)
    cols = masks.any(dim=-2)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    bottom = (rows * ys).amax(-1)
    top = torch.where(rows, ys, height).amin(-1)
    right = (cols * xs).amax(-1)
    left = torch.where(cols, xs, width).amin(-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    empty = (right < left) | (bottom < top)
    return boxes.masked_fill(empty[..., None], 0)
