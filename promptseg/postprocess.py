"""Measurements of binary masks: areas, boxes, depth maps, and points placed in them."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def depth_map(masks: torch.Tensor) -> torch.Tensor:
    """(P, H, W) bool -> (P, H, W) int32 chessboard distance to the nearest pixel outside the mask
    (the image border counts as outside); 0 outside the masks."""
    current = masks.float()[:, None]
    depth = torch.zeros_like(current)
    while bool(current.any()):
        depth += current
        padded = F.pad(current, (1, 1, 1, 1), value=0.0)
        current = -F.max_pool2d(-padded, kernel_size=3, stride=1)
    return depth[:, 0].to(torch.int32)


def deepest_points(masks: torch.Tensor) -> torch.Tensor:
    """(P, H, W) bool -> (P, 2) float (x, y) of the pixel farthest from each mask's boundary
    (the first in raster order among ties). An empty mask gives its (0, 0) pixel."""
    index = depth_map(masks).flatten(1).argmax(dim=1)
    width = masks.shape[-1]
    return torch.stack([index % width, index // width], dim=1).float()


def random_points(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(P, H, W) bool -> (P, 2) float (x, y) of a pixel drawn uniformly from each mask.
    An empty mask draws uniformly from the whole image."""
    weights = masks.flatten(1).float()
    weights[weights.sum(1) == 0] = 1.0
    cumulative = weights.cumsum(dim=1)
    draws = torch.rand(len(weights), 1, generator=generator, device=masks.device) * cumulative[:, -1:]
    index = torch.searchsorted(cumulative, draws, right=True)[:, 0].clamp_max(weights.shape[1] - 1)
    width = masks.shape[-1]
    return torch.stack([index % width, index // width], dim=1).float()
