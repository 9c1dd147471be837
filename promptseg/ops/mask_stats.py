"""Measurements of binary masks that the mask post-processing kernel also returns: areas and boxes.

They are the references of the ``boxes`` and ``areas`` outputs of :func:`promptseg.ops.mask_postprocess`.

On the CPU, PyTorch's reductions of bool tensors are slow (a sum of 3 x 1200 x 1800 bools ~30 ms
at one thread, ``any`` along rows ~10 ms): they convert every element on the way. Eager bool
masks on the CPU are therefore read through a ``uint8`` view of the same memory: a count is a sum
of each line (along the contiguous axis) in a small integer type, then of the line sums in int64;
``any`` is ``amax`` of the bytes. Both are exact (0.1-0.7 ms for the same masks at one thread). A line sum is at
most the line's length, so it accumulates in int16 when that length is at most 32767, else in
int32. CUDA tensors, other dtypes, and traced, scripted, exported or compiled code take the plain
PyTorch reductions, unchanged.
"""

from __future__ import annotations

import torch

from promptseg.ops.eager import tracing

INT16_MAX_LINE = 32767
"""Longest line (pixels) whose count is summed in int16; longer lines are summed in int32."""

SLAB_BYTES = 1 << 22
"""Most bytes of the integer temporary that one slab of :func:`true_counts` casts its lines into."""


def mask_areas(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool -> (...) int64 number of foreground pixels."""
    _check_mask_dims(masks, "mask_areas")
    if fast_reductions_apply(masks):
        return true_counts(masks)
    return masks.flatten(-2).sum(-1)


def mask_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool -> (..., 4) int64 inclusive XYXY boxes; an empty mask gives [0, 0, 0, 0]."""
    _check_mask_dims(masks, "mask_boxes_xyxy")
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.long, device=masks.device)
    height, width = masks.shape[-2:]
    if fast_reductions_apply(masks):
        data = masks.view(torch.uint8)
        rows, cols = data.amax(dim=-1) != 0, data.amax(dim=-2) != 0
    else:
        rows, cols = masks.any(dim=-1), masks.any(dim=-2)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    bottom = (rows * ys).amax(-1)
    top = torch.where(rows, ys, height).amin(-1)
    right = (cols * xs).amax(-1)
    left = torch.where(cols, xs, width).amin(-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    empty = (right < left) | (bottom < top)
    return boxes.masked_fill(empty[..., None], 0)


def true_counts(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool CPU masks -> (...) int64 number of True pixels, exactly, through a uint8 view.

    Each line along the axis with the smaller stride (the rows of a contiguous tensor, the columns
    of a transposed one) is summed first, in int16 when it holds at most :data:`INT16_MAX_LINE`
    pixels, else in int32; the line sums are then summed in int64. PyTorch casts the bytes to the
    sum's dtype in a temporary as large as the input, so the lines go in slabs of at most
    :data:`SLAB_BYTES` of that temporary (a temporary past glibc's mmap threshold is page-faulted
    afresh on every call: 33 against 2.8 ms for 12 x 1200 x 1800 masks at one thread). Callers that
    may run traced or on CUDA use :func:`mask_areas`, which falls back to the plain sum there.
    """
    _check_mask_dims(masks, "true_counts")
    if masks.dtype != torch.bool or masks.device.type != "cpu":
        raise ValueError(f"true_counts takes bool CPU masks, got {masks.dtype} on {masks.device}")
    inner, outer = (-2, -1) if masks.stride(-2) < masks.stride(-1) else (-1, -2)
    line_dtype = torch.int16 if masks.shape[inner] <= INT16_MAX_LINE else torch.int32
    data = masks.view(torch.uint8)
    line_bytes = line_dtype.itemsize * max(1, masks.numel() // max(1, masks.shape[outer]))
    step = max(1, SLAB_BYTES // line_bytes)
    counts = torch.zeros(masks.shape[:-2], dtype=torch.int64)
    for first in range(0, masks.shape[outer], step):
        slab = data.narrow(outer, first, min(step, masks.shape[outer] - first))
        counts += slab.sum(inner, dtype=line_dtype).sum(-1, dtype=torch.int64)
    return counts


def fast_reductions_apply(masks: torch.Tensor) -> bool:
    """Whether :func:`mask_areas` / :func:`mask_boxes_xyxy` read ``masks`` through a uint8 view:
    eager (not traced, scripted, exported or compiled) bool tensors on the CPU."""
    if masks.dtype != torch.bool or masks.device.type != "cpu":
        return False
    return not tracing()


def _check_mask_dims(masks: torch.Tensor, name: str) -> None:
    if masks.dim() < 2:
        raise ValueError(f"{name} takes (..., H, W) masks, got a tensor of shape {tuple(masks.shape)}")
