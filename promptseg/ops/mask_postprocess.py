"""Mask post-processing: low-res mask logits -> thresholded masks at the original image size.

The reference is :func:`upscale_mask_logits` (which ``Sam.postprocess_masks`` calls) followed by
``> threshold``: a bilinear upscale to the padded encoder frame, a crop to the resized image, a
bilinear resize to the original size. On
CUDA bf16/fp16 logits the ``promptseg::mask_postprocess`` kernel (``csrc/mask_postprocess.cu``)
does it in one pass, computing each output pixel straight from the low-res logits, and can also
measure each mask's box and area on the way. On the CPU, thresholded masks come from
:mod:`promptseg.ops.cpu_mask_postprocess`, which computes only the tiles near an object boundary.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

from promptseg.ops.cpu_mask_postprocess import cpu_mask_postprocess_applies, mask_postprocess_cpu
from promptseg.ops.dispatch import kernel_for, kernel_limits
from promptseg.ops.eager import tracing
from promptseg.ops.fakes import register_fake_if_built
from promptseg.ops.mask_stats import mask_areas, mask_boxes_xyxy


class PostprocessedMasks(NamedTuple):
    """Output of :func:`mask_postprocess`.

    Attributes:
        masks: (P, M, H, W) bool masks, or float32 logits when ``return_logits``.
        boxes: (P, M, 4) int64 inclusive XYXY boxes of the thresholded masks ([0, 0, 0, 0] when
            empty), or None without ``with_stats``.
        areas: (P, M) int64 foreground pixel counts, or None without ``with_stats``.
    """

    masks: torch.Tensor
    boxes: Optional[torch.Tensor]
    areas: Optional[torch.Tensor]


def mask_postprocess(
    low_res: torch.Tensor,
    input_size: Sequence[int],
    original_size: Sequence[int],
    image_size: int,
    threshold: float = 0.0,
    return_logits: bool = False,
    with_stats: bool = False,
    backend: str = "auto",
) -> PostprocessedMasks:
    """Upscale, crop, resize and threshold low-res mask logits.

    Args:
        low_res: (P, M, h, w) logits in any floating dtype.
        input_size: (h_in, w_in) of the resized image inside the padded frame, each in [1, image_size].
        original_size: (H, W) of the original image.
        image_size: side of the padded square frame the encoder sees (1024 for SAM).
        threshold: a pixel is foreground when its logit is > threshold (``Sam.mask_threshold``).
        return_logits: return the float32 logits instead of the bool masks.
        with_stats: also return each mask's box and area.
        backend: see :data:`promptseg.ops.BACKENDS`.
    Returns:
        :class:`PostprocessedMasks`; equal to :func:`upscale_mask_logits` (+ threshold), and boxes and
        areas equal to :func:`promptseg.ops.mask_boxes_xyxy` / :func:`promptseg.ops.mask_areas` of the
        masks. Thresholded masks on the CPU (``backend`` not ``"reference"``; at least a quarter
        megapixel of them) come from :func:`promptseg.ops.cpu_mask_postprocess.mask_postprocess_cpu`:
        equal except at pixels whose logit lies within ``TOLERANCE * (1 + max|low_res|)`` (1e-5) of the
        threshold.
    """
    input_size, original_size = _check_inputs(low_res, input_size, original_size, image_size)
    kernel = kernel_for("mask_postprocess", low_res, backend=backend)
    # The kernel stages four rows of logits in shared memory, so it takes widths up to a limit.
    if kernel is not None and low_res.shape[-1] <= kernel_limits("mask_postprocess")["max_low_res_width"]:
        masks, boxes, areas = kernel(
            low_res.contiguous(), input_size, original_size, image_size, float(threshold), return_logits, with_stats
        )
        return PostprocessedMasks(masks, boxes if with_stats else None, areas if with_stats else None)
    if backend != "reference" and cpu_mask_postprocess_applies(low_res, original_size, return_logits):
        masks = mask_postprocess_cpu(low_res, input_size, original_size, image_size, threshold)
        if masks is not None:  # None: a NaN or an infinity, which the reference defines
            return PostprocessedMasks(
                masks, mask_boxes_xyxy(masks) if with_stats else None, mask_areas(masks) if with_stats else None
            )
    return mask_postprocess_reference(low_res, input_size, original_size, image_size, threshold, return_logits, with_stats)


def mask_postprocess_reference(
    low_res: torch.Tensor,
    input_size: Sequence[int],
    original_size: Sequence[int],
    image_size: int,
    threshold: float = 0.0,
    return_logits: bool = False,
    with_stats: bool = False,
) -> PostprocessedMasks:
    """Pure-PyTorch :func:`mask_postprocess`: :func:`upscale_mask_logits`, then the threshold."""
    input_size, original_size = _check_inputs(low_res, input_size, original_size, image_size)
    logits = upscale_mask_logits(low_res, input_size, original_size, image_size)
    binary = logits > threshold
    boxes = mask_boxes_xyxy(binary) if with_stats else None
    areas = mask_areas(binary) if with_stats else None
    return PostprocessedMasks(logits if return_logits else binary, boxes, areas)


def upscale_mask_logits(
    low_res: torch.Tensor, input_size: Sequence[int], original_size: Sequence[int], image_size: int
) -> torch.Tensor:
    """(B, M, h, w) low-res logits (any floating dtype) -> (B, M, H, W) float32 logits at the original size.

    A bilinear upscale to the (image_size, image_size) padded encoder frame, a crop to the resized
    image ``input_size`` = (h_in, w_in) (the padding dropped), a bilinear resize to ``original_size``
    = (H, W); ``align_corners=False`` throughout, as the official ``Sam.postprocess_masks``. The sizes
    may be sequences of ints or, in a traced export, (2,) int64 tensors; nothing is validated here.
    """
    # A strided input (the crop; the 3 of 4 masks a multimask decode keeps) costs PyTorch's CPU kernel
    # two extra copies of its output (2.4x the time at 2 megapixels, benchmarks/NOTES.md); a
    # contiguous copy of the input gives the same values (checked bit for bit in the tests).
    logits = F.interpolate(low_res.float().contiguous(), (image_size, image_size), mode="bilinear", align_corners=False)
    logits = logits[..., : input_size[0], : input_size[1]].contiguous()
    if _resize_is_identity(logits, low_res, original_size):
        return logits
    return F.interpolate(logits, tuple(original_size), mode="bilinear", align_corners=False)


def _resize_is_identity(cropped: torch.Tensor, low_res: torch.Tensor, original_size: Sequence[int]) -> bool:
    """Whether the final resize of :func:`upscale_mask_logits` would return ``cropped`` unchanged, so may
    be skipped: eagerly (a trace keeps the reference's graph), the crop already has the original size, and
    the logits are finite. A bilinear resize to the same size weighs each pixel by 1 and its neighbour by
    0, which reproduces finite values bit for bit; an infinity would become NaN (0 x inf), so non-finite
    logits keep the resize (checked on the low-res logits, whose bilinear upscale is finite when they are).
    A 256-pixel image on the bundled model saves a 3 x 256 x 256 resize (~0.2 ms) per click."""
    if tracing() or not all(isinstance(size, int) for size in original_size):
        return False
    return tuple(cropped.shape[-2:]) == tuple(original_size) and bool(torch.isfinite(low_res).all())


def _check_inputs(
    low_res: torch.Tensor, input_size: Sequence[int], original_size: Sequence[int], image_size: int
) -> tuple[list[int], list[int]]:
    """Validate the arguments of :func:`mask_postprocess`; returns the sizes as lists of ints."""
    if low_res.dim() != 4 or not low_res.is_floating_point() or low_res.shape[-1] < 1 or low_res.shape[-2] < 1:
        raise ValueError(
            f"low_res must be floating (P, M, h, w) logits with h, w >= 1, got {low_res.dtype} {tuple(low_res.shape)}"
        )
    sizes = [int(size) for size in input_size], [int(size) for size in original_size]
    if image_size < 1 or len(sizes[0]) != 2 or not all(1 <= size <= image_size for size in sizes[0]):
        raise ValueError(f"input_size must be (h, w) with 1 <= h, w <= image_size={image_size}, got {tuple(input_size)}")
    if len(sizes[1]) != 2 or not all(size >= 1 for size in sizes[1]):
        raise ValueError(f"original_size must be (H, W) with H, W >= 1, got {tuple(original_size)}")
    return sizes


@register_fake_if_built("mask_postprocess")
def _mask_postprocess_fake(low_res, input_size, original_size, image_size, threshold, return_logits, with_stats):
    """Output shapes of ``torch.ops.promptseg.mask_postprocess``: (P, M, H, W) masks (float32 with
    ``return_logits``, else bool), (P, M, 4) int64 boxes and (P, M) int64 areas with ``with_stats``,
    else two (0,) int64 tensors."""
    prompts, masks_per_prompt = low_res.shape[:2]
    dtype = torch.float32 if return_logits else torch.bool
    masks = low_res.new_empty((prompts, masks_per_prompt, *original_size), dtype=dtype)
    stats = (prompts, masks_per_prompt) if with_stats else (0,)
    boxes = low_res.new_empty((*stats, 4) if with_stats else stats, dtype=torch.int64)
    return masks, boxes, low_res.new_empty(stats, dtype=torch.int64)
