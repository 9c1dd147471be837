"""Measurements of masks: areas, boxes, IoU, stability, depth maps, and points placed in them.

Named apart from ``Sam.postprocess_masks`` and ``promptseg.ops.mask_postprocess``, which turn
low-res logits into full-size masks; everything here measures masks that already exist.
Areas and boxes are the references of the post-processing kernel's statistics, so they live in
``promptseg.ops`` and are re-exported here.
"""

from __future__ import annotations

import torch

from promptseg.ops import fast_reductions_apply, mask_areas, mask_boxes_xyxy, true_counts

__all__ = [
    "deepest_points",
    "depth_map",
    "mask_areas",
    "mask_boxes_xyxy",
    "mask_iou",
    "random_points",
    "stability_score",
]


def mask_iou(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool predictions and broadcastable targets -> (...) float32 IoU; two empty masks give 1."""
    targets = targets.expand_as(predictions)
    intersection = (predictions & targets).flatten(-2).sum(-1).float()
    union = (predictions | targets).flatten(-2).sum(-1).float()
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


def stability_score(mask_logits: torch.Tensor, mask_threshold: float, threshold_offset: float) -> torch.Tensor:
    """IoU of the masks binarised at ``mask_threshold + offset`` and at ``mask_threshold - offset``.

    The first mask lies inside the second, so the IoU is the ratio of their areas. An empty
    looser mask gives NaN (0 / 0), as in the official code. The counts are int32 sums, which
    ONNX graphs and TensorRT take as they are (a mask of 2**31 pixels or more would overflow);
    eager CPU logits are counted exactly by :func:`promptseg.ops.true_counts` instead (the same
    integers, so the same float32 ratio, ~10x faster than a bool sum).

    Args:
        mask_logits: (..., H, W) float logits.
    Returns:
        (...) float32.
    """
    inner = mask_logits > (mask_threshold + threshold_offset)
    outer = mask_logits > (mask_threshold - threshold_offset)
    if fast_reductions_apply(inner):
        return true_counts(inner).float() / true_counts(outer).float()
    inner = inner.sum(-1, dtype=torch.int32).sum(-1, dtype=torch.int32)
    outer = outer.sum(-1, dtype=torch.int32).sum(-1, dtype=torch.int32)
    return inner.float() / outer.float()


def depth_map(masks: torch.Tensor) -> torch.Tensor:
    """(P, H, W) bool -> (P, H, W) int32 chessboard distance to the nearest pixel outside the mask
    (the image border counts as outside); 0 outside the masks.

    Each mask is eroded with a 3 x 3 square inside its own bounding box (a zero frame around the
    box stands for everything outside it, the image border included), until nothing is left; a
    pixel's depth is the number of erosions it is in. Work scales with each mask's box and depth.
    """
    masks = masks != 0
    depth = torch.zeros(masks.shape, dtype=torch.int32, device=masks.device)
    if masks.numel() == 0:
        return depth
    boxes = mask_boxes_xyxy(masks).tolist()
    for index, present in enumerate(masks.flatten(1).any(1).tolist()):
        if present:
            left, top, right, bottom = boxes[index]
            box = (index, slice(top, bottom + 1), slice(left, right + 1))
            depth[box] = _eroded_count(masks[box])
    return depth


def _eroded_count(mask: torch.Tensor) -> torch.Tensor:
    """(h, w) bool -> (h, w) int32: in how many of its successive 3 x 3 erosions (outside the
    array counts as outside the mask) each pixel is."""
    height, width = mask.shape
    framed = torch.zeros((height + 2, width + 2), dtype=torch.bool, device=mask.device)
    current = framed[1:-1, 1:-1]
    current.copy_(mask)
    count = torch.zeros((height, width), dtype=torch.int32, device=mask.device)
    while bool(current.any()):
        count += current
        rows = framed[:, :-2] & framed[:, 1:-1] & framed[:, 2:]
        torch.logical_and(rows[:-2] & rows[1:-1], rows[2:], out=current)
    return count


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
