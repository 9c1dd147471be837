"""The mask post-processing on the CPU: thresholded masks without resizing the whole logit maps.

:func:`promptseg.ops.mask_postprocess_reference` upscales (P, M, h, w) low-res logits to the padded
(S, S) frame, crops the resized image, resizes the crop to the original (H, W) (both bilinear,
``align_corners=False``) and keeps ``> threshold``. On the CPU that costs two full-size float32
resizes and a comparison: ~11 ms at two threads for a 1800x1200 photo, most of it spent far from
any object boundary, where every pixel's answer is the same.

Here the two resamplings are composed: along each axis an output pixel is a combination of at most
four low-res logits with non-negative weights, ``O = A_h L A_w^T``. The output is cut into tiles
(:data:`TILE` pixels square; the last tile of a row or column overlaps its neighbour); for each tile
the low-res window it reads (the rows and columns of its taps) is known ahead, and so its minimum
and maximum logit, one cheap reduction per mask. Then:

* a tile whose window is all above ``threshold + margin`` is all True, all below
  ``threshold - margin`` all False (``margin`` = :data:`MARGIN` x (|min| + |max|) of the window, far
  above the float32 rounding of the two resamplings, whose weights sum to 1 up to a few ulps).
  With ``threshold == 0`` a window <= 0 is all False exactly: non-negative weights keep the sign;
* only the other tiles (object boundaries) are computed, as a batched ``(Th, kr) @ (kr, kc) @ (kc, Tw)``
  with each tile's composite weights (composed in float64 from PyTorch's source-index rule, cached
  per size combination), and thresholded.

What is guaranteed (``tests/ops/test_cpu_mask_postprocess.py``): the bool masks equal the
reference's at every pixel whose reference logit ``x`` satisfies ``|x - threshold| > TOLERANCE *
(1 + max|low_res|)``. Bit-identity with PyTorch's resize is out of reach for any re-arrangement (its
vectorised kernel rounds a pixel differently depending on the tensor's width and height,
``benchmarks/NOTES.md``), and the decoder's logits carry float32 rounding of their own. Low-res
logits with a NaN or an infinity are left to the reference (:func:`mask_postprocess_cpu` returns
None), which defines what they give.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional, Sequence

import torch

from promptseg.ops.eager import tracing

TILE = 32
"""Side of the output tiles (pixels)."""

MARGIN = 4e-6
"""A tile is uniform when its window clears the threshold by this fraction of |min| + |max| of its logits."""

MIN_PIXELS = 1 << 18
"""Fewer mask pixels than this take the reference: its two resizes then cost about this path's fixed
~0.5 ms of small ops or less (two threads: 3 x 256 x 256 pixels 0.47 ms against 0.6 ms here)."""

DENSE_FRACTION = 0.3
"""When more than this fraction of the tiles straddle the threshold (noise-like masks, e.g. a model with
random weights), every pixel is computed by :func:`_banded_masks` (two passes of batched GEMMs, ~6 ms for
3 x 1200 x 1800 at two threads) instead of tile by tile."""

TOLERANCE = 1e-5
"""Pixels whose reference logit lies within ``TOLERANCE * (1 + max|low_res|)`` of the threshold may
differ from the reference; all others are equal."""


_WORDS = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}
"""The integer type of a word of 8, 4, 2 or 1 bool pixels."""


class _AxisPlan(NamedTuple):
    """The composed resampling along one axis, cut into tiles of the output.

    Attributes:
        starts: (n,) int64 first output pixel of each tile (the last tile may overlap the one before).
        tile: output pixels per tile (``min(TILE, out)``).
        pixel_tile: (out,) int64 tile of each output pixel (one of the tiles holding it).
        windows: (n,) int64 first low-res index of each tile's window.
        window: low-res indices per window (the same for every tile).
        window_indices: (n * window,) int64 the low-res indices of every window, one after the other.
        weights: (n, tile, window) float32 composite weights of each tile's pixels over its window.
    """

    starts: torch.Tensor
    tile: int
    pixel_tile: torch.Tensor
    windows: torch.Tensor
    window: int
    window_indices: torch.Tensor
    weights: torch.Tensor


def cpu_mask_postprocess_applies(low_res: torch.Tensor, original_size: Sequence[int], return_logits: bool) -> bool:
    """Whether :func:`mask_postprocess_cpu` should run these inputs: (P, M, h, w) floating logits on the
    CPU whose (P, M, H, W) masks at ``original_size`` (H, W) hold at least :data:`MIN_PIXELS` pixels,
    thresholded masks wanted (not ``return_logits``), and not inside a trace (an ONNX export or
    ``torch.compile`` keeps the reference's graph)."""
    if tracing():
        return False
    if return_logits or low_res.device.type != "cpu" or not low_res.is_floating_point():
        return False
    return low_res.shape[0] * low_res.shape[1] * int(original_size[0]) * int(original_size[1]) >= MIN_PIXELS


@torch.no_grad()
def mask_postprocess_cpu(
    low_res: torch.Tensor,
    input_size: Sequence[int],
    original_size: Sequence[int],
    image_size: int,
    threshold: float = 0.0,
) -> Optional[torch.Tensor]:
    """Thresholded masks at the original size from low-res logits (inputs checked by the caller).

    Args:
        low_res: (P, M, h, w) floating logits on the CPU (any strides; left unmodified). As the
            reference, the arithmetic is float32 whatever the dtype.
        input_size: (h_in, w_in) of the resized image inside the padded frame, 1 <= each <= image_size.
        original_size: (H, W) of the original image.
        image_size: side S of the padded square frame.
        threshold: a pixel is True when its logit is > threshold.
    Returns:
        (P, M, H, W) bool masks, equal to :func:`promptseg.ops.mask_postprocess_reference`'s but where
        the reference logit is within :data:`TOLERANCE` ``* (1 + max|low_res|)`` of the threshold;
        or None when the windows read hold a NaN or an infinity (take the reference then).
    """
    prompts, masks_per_prompt, low_h, low_w = low_res.shape
    height, width = (int(size) for size in original_size)
    if low_res.numel() == 0:
        return torch.zeros(prompts, masks_per_prompt, height, width, dtype=torch.bool)
    threshold = float(threshold)
    logits = low_res.reshape(prompts * masks_per_prompt, low_h, low_w).float()
    rows = _axis_plan(low_h, int(image_size), int(input_size[0]), height)
    cols = _axis_plan(low_w, int(image_size), int(input_size[1]), width)

    low, high = _window_extremes(logits, rows, cols)  # (planes, row tiles, column tiles) each
    if not (math.isfinite(float(low.amin())) and math.isfinite(float(high.amax()))):
        return None  # a NaN (which the reductions propagate) or an infinity
    # A uniform tile clears the threshold by MARGIN x its window's magnitude (|low| + |high| >= the largest).
    margin = (low.abs() + high.abs()).mul_(MARGIN)
    uniform_true = (low - threshold) > margin
    uniform_false = high <= 0 if threshold == 0.0 else (threshold - high) > margin
    mixed = (uniform_true | uniform_false).logical_not_()
    if mixed.float().mean() > DENSE_FRACTION:  # e.g. noise-like masks: every tile at once is cheaper
        return _banded_masks(logits, rows, cols, height, width, threshold).view(prompts, masks_per_prompt, height, width)
    masks = _expand_tiles(uniform_true, rows, cols, height, width)
    mixed = mixed.nonzero()
    if len(mixed):
        _write_mixed_tiles(masks, logits, mixed, rows, cols, threshold)
    return masks.view(prompts, masks_per_prompt, height, width)


def _banded_masks(
    logits: torch.Tensor, rows: _AxisPlan, cols: _AxisPlan, height: int, width: int, threshold: float
) -> torch.Tensor:
    """(planes, h, w) logits -> (planes, H, W) bool masks, every pixel computed, one axis at a time:
    each column tile from its window of low-res columns (only the low-res rows some row window reads),
    then each row tile from its window of those rows (batched GEMMs of the tiles' composite weights)."""
    planes = logits.shape[0]
    first, last = int(rows.windows[0]), int(rows.windows[-1]) + rows.window  # the low-res rows read
    by_columns = logits[:, first:last].unfold(2, cols.window, 1)[:, :, cols.windows]  # (planes, rows, tiles, kc)
    across = torch.einsum("phtk,tck->phtc", by_columns, cols.weights).reshape(planes, last - first, -1)
    if across.shape[2] != width:  # the last column tile overlaps the one before: keep its new pixels
        kept = (len(cols.starts) - 1) * cols.tile
        across = torch.cat([across[..., :kept], across[..., across.shape[2] - (width - kept) :]], 2)
    by_rows = across.index_select(1, rows.window_indices - first).view(-1, rows.window, width)
    weights = rows.weights.expand(planes, -1, -1, -1).reshape(-1, rows.tile, rows.window)
    values = torch.bmm(weights, by_rows).view(planes, -1, width)  # (planes, row tiles * tile, W)
    masks = torch.empty(planes, height, width, dtype=torch.bool)
    kept = min(height, (len(rows.starts) - 1) * rows.tile)
    torch.gt(values[:, :kept], threshold, out=masks[:, :kept])
    if kept < height:  # the last row tile overlaps the one before: its new rows
        torch.gt(values[:, values.shape[1] - (height - kept) :], threshold, out=masks[:, kept:])
    return masks


def _window_extremes(logits: torch.Tensor, rows: _AxisPlan, cols: _AxisPlan) -> tuple[torch.Tensor, torch.Tensor]:
    """(planes, h, w) logits -> (planes, row tiles, column tiles) min and max over each tile's window.

    Rows first (the windows' whole low-res rows gathered, reduced across them), then the same along the
    columns of the transposed result: every gather copies contiguous rows, every reduction runs across them.
    """
    planes, _, low_w = logits.shape
    row_tiles, col_tiles = len(rows.windows), len(cols.windows)
    by_rows = logits.index_select(1, rows.window_indices).view(planes, row_tiles, rows.window, low_w)
    both = torch.stack((by_rows.amin(2), by_rows.amax(2))).transpose(2, 3).contiguous()  # (2, planes, w, row tiles)
    by_cols = both.index_select(2, cols.window_indices).view(2, planes, col_tiles, cols.window, row_tiles)
    return by_cols[0].amin(2).transpose(1, 2), by_cols[1].amax(2).transpose(1, 2)


def _expand_tiles(tiles: torch.Tensor, rows: _AxisPlan, cols: _AxisPlan, height: int, width: int) -> torch.Tensor:
    """(planes, row tiles, column tiles) bool -> (planes, H, W) bool, each pixel its tile's value."""
    planes, row_tiles, col_tiles = tiles.shape
    if cols.tile % 8 == 0:
        # Eight equal bools are one int64: a tile's value times 0x0101010101010101.
        words = tiles.to(torch.int64, memory_format=torch.contiguous_format)[..., None]
        words = words.expand(-1, -1, -1, cols.tile // 8) * 0x0101010101010101
        by_columns = words.view(torch.bool).view(planes, row_tiles, col_tiles * cols.tile)[..., :width]
    else:
        by_columns = tiles.index_select(2, cols.pixel_tile)  # (planes, row tiles, W)
    out = torch.empty(planes, height, width, dtype=torch.bool)
    full = (height // rows.tile) * rows.tile
    out[:, :full].view(planes, height // rows.tile, rows.tile, width).copy_(
        by_columns[:, : height // rows.tile, None, :].expand(-1, -1, rows.tile, -1)
    )
    if full < height:
        out[:, full:].copy_(by_columns[:, -1:, :].expand(-1, height - full, -1))
    return out


def _write_mixed_tiles(
    masks: torch.Tensor, logits: torch.Tensor, mixed: torch.Tensor, rows: _AxisPlan, cols: _AxisPlan, threshold: float
) -> None:
    """Compute the tiles ``mixed`` ((n, 3) int64 plane, tile row, tile column) of (planes, H, W) ``masks``
    from (planes, h, w) ``logits``, thresholded, in place."""
    planes, height, width = masks.shape
    plane, tile_row, tile_col = mixed.unbind(1)
    windows = logits.unfold(1, rows.window, 1).unfold(2, cols.window, 1)  # (planes, ., ., kr, kc) view
    window_logits = windows[plane, rows.windows[tile_row], cols.windows[tile_col]]  # (n, kr, kc)
    values = torch.bmm(torch.bmm(rows.weights[tile_row], window_logits), cols.weights[tile_col].transpose(1, 2))
    binary = values > threshold  # (n, tile rows, tile columns)
    first = plane * (height * width) + rows.starts[tile_row] * width + cols.starts[tile_col]  # (n,)
    # Tile rows are written as words of `unit` pixels: every tile row starts on such a boundary.
    unit = math.gcd(width, cols.tile, 8)
    word = _WORDS[unit]
    offsets = (torch.arange(rows.tile) * (width // unit))[:, None] + torch.arange(cols.tile // unit)
    index = first.div_(unit, rounding_mode="floor")[:, None, None] + offsets
    masks.view(-1).view(word).scatter_(0, index.view(-1), binary.view(word).view(-1))


@functools.lru_cache(maxsize=32)
def _axis_plan(low: int, frame: int, crop: int, out: int) -> _AxisPlan:
    """The tiles of one axis: low-res size ``low`` -> frame ``frame`` -> first ``crop`` -> ``out``."""
    crop_taps = _taps(crop, out)  # output pixel -> frame index, of the crop
    frame_taps = _taps(low, frame)  # frame index -> low-res index
    composite = torch.zeros(out, low, dtype=torch.float64)
    first_low = torch.full((out,), low, dtype=torch.int64)
    last_low = torch.zeros(out, dtype=torch.int64)
    pixels = torch.arange(out)
    for crop_index, crop_weight in zip(crop_taps.indices, crop_taps.weights):
        for low_index, low_weight in zip(frame_taps.indices, frame_taps.weights):
            composite.index_put_((pixels, low_index[crop_index]), crop_weight * low_weight[crop_index], accumulate=True)
    for crop_index in crop_taps.reach:
        for low_index in frame_taps.reach:
            first_low = torch.minimum(first_low, low_index[crop_index])
            last_low = torch.maximum(last_low, low_index[crop_index])

    tile = min(TILE, out)
    count = -(-out // tile)
    starts = torch.clamp(torch.arange(count) * tile, max=out - tile)
    pixel_tile = torch.clamp(pixels // tile, max=count - 1)
    in_tile = starts[:, None] + torch.arange(tile)  # (count, tile) output pixels
    tile_first = first_low[in_tile].amin(1)
    window = int((last_low[in_tile].amax(1) - tile_first).max()) + 1
    windows = torch.clamp(tile_first, max=low - window)
    window_indices = windows[:, None] + torch.arange(window)  # (count, window)
    weights = composite[in_tile[:, :, None], window_indices[:, None, :]]
    return _AxisPlan(starts, tile, pixel_tile, windows, window, window_indices.view(-1), weights.float())


class _Taps(NamedTuple):
    """Bilinear taps of one resize along one axis (``align_corners=False``).

    Attributes:
        indices: the two (out,) int64 source indices of each output pixel (PyTorch's rule).
        weights: their two (out,) float64 weights (PyTorch's float32 lambdas).
        reach: (out,) int64 source indices PyTorch may read, whichever way its float32 source
            coordinate rounds (with or without a fused multiply-add): the window must hold them all.
    """

    indices: tuple[torch.Tensor, torch.Tensor]
    weights: tuple[torch.Tensor, torch.Tensor]
    reach: tuple[torch.Tensor, ...]


def _taps(in_size: int, out_size: int) -> _Taps:
    """PyTorch's CPU bilinear taps: src = max(scale * (dst + 0.5) - 0.5, 0) in float32 with scale = in / out,
    first = min(floor(src), in - 1), second = first + 1 clamped at the edge, far weight src - first."""
    scale = torch.tensor(in_size, dtype=torch.float32) / out_size
    centres = torch.arange(out_size, dtype=torch.float32) + 0.5
    separate = torch.clamp(scale * centres - 0.5, min=0.0)  # two float32 roundings
    fused = torch.clamp(scale.double() * centres.double() - 0.5, min=0.0).float()  # one rounding
    reach = []
    for source in (separate, fused):
        first = torch.clamp(source.floor().long(), max=in_size - 1)
        reach += [first, first + (first < in_size - 1).long()]
    first, second = reach[:2]
    far = torch.clamp(separate - first.float(), 0.0, 1.0)
    return _Taps((first, second), ((1.0 - far).double(), far.double()), tuple(reach))
