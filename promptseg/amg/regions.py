"""Removing small disconnected islands and small holes from binary masks, on the masks' device.

Same semantics as the official ``remove_small_regions`` (OpenCV connected
components, 8-connectivity): first every connected region of unset pixels
smaller than the area threshold is filled ("holes"), then every connected
region of set pixels smaller than it is cleared ("islands"); a mask whose
islands are all small keeps its largest one, the first in OpenCV's label order
(2x2 blocks in raster order) on ties.

Components are found on runs (maximal horizontal segments of set pixels):
runs on neighbouring rows that touch (overlap or meet diagonally) are joined by
union-find with min-label hooking and pointer jumping. The work per pixel is a
few vectorised passes; everything else scales with the number of runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

REGION_MODES = ("holes", "islands")


@dataclass
class _Runs:
    """The runs of a (M, A, B) bool tensor and the components they form.

    Attributes:
        start: (R,) int64 flat index of each run's first pixel, increasing.
        length: (R,) int64 pixels in the run.
        mask: (R,) int64 index of the run's mask.
        row, col: (R,) int64 row of the run and column of its first pixel.
        root: (R,) int64 index of the first run of the run's component.
        component_size: (R,) int64 pixels in the run's component.
    """

    start: torch.Tensor
    length: torch.Tensor
    mask: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    root: torch.Tensor
    component_size: torch.Tensor


def remove_small_regions_batch(masks: torch.Tensor, min_area: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill small holes, then clear small islands, in every mask.

    Args:
        masks: (M, H, W) bool. A transposed view of a contiguous (M, W, H)
            tensor is processed in place of a copy, and the result has the
            same layout.
        min_area: regions with fewer pixels than this are removed.
    Returns:
        cleaned: (M, H, W) bool, a new tensor.
        changed: (M,) bool, whether a hole was filled or an island cleared.
    """
    columns_first = not masks.is_contiguous() and masks.transpose(1, 2).is_contiguous()
    storage = masks.transpose(1, 2) if columns_first else masks.contiguous()
    filled, holes_changed = fill_small_holes(storage, min_area)
    cleaned, islands_changed = clear_small_islands(filled, min_area, columns_first)
    return (cleaned.transpose(1, 2) if columns_first else cleaned), holes_changed | islands_changed


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill the small holes (``mode="holes"``) or clear the small islands (``"islands"``) of one mask.

    The official single-mask, host-side form of :func:`remove_small_regions_batch`'s two steps.

    Args:
        mask: (H, W) bool.
        area_thresh: regions with fewer pixels than this are removed.
    Returns:
        The (H, W) bool result (``mask`` itself when nothing changed) and whether it changed.
    """
    if mode not in REGION_MODES:
        raise ValueError(f"mode must be one of {list(REGION_MODES)}, got {mode!r}")
    masks = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))[None]
    step = fill_small_holes if mode == "holes" else clear_small_islands
    cleaned, changed = step(masks, area_thresh)
    if not bool(changed[0]):
        return mask, False
    return cleaned[0].numpy(), True


def fill_small_holes(masks: torch.Tensor, min_area: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Set every connected region of unset pixels smaller than ``min_area`` in (M, A, B) contiguous masks.

    Returns the (M, A, B) filled masks and (M,) bool "a region was filled".
    """
    background = ~masks
    runs = _label_components(background)
    small = runs.component_size < min_area
    return masks | _paint(background.shape, runs, small), _any_per_mask(runs.mask, small, len(masks))


def clear_small_islands(
    masks: torch.Tensor, min_area: int, columns_first: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clear every connected region of set pixels smaller than ``min_area`` in (M, A, B) contiguous masks.

    A mask whose regions are all small keeps its largest one (ties: the first
    in OpenCV's label order, for which ``columns_first`` says that the masks are
    stored transposed, A being the image width).
    Returns the (M, A, B) cleaned masks and (M,) bool "a region was cleared".
    """
    count = len(masks)
    runs = _label_components(masks)
    small = runs.component_size < min_area
    has_large = _any_per_mask(runs.mask, ~small, count)
    # OpenCV numbers components by their first 2x2 block in raster order of the image.
    if columns_first:
        image_row, image_col, image_width = runs.col, runs.row, masks.shape[1]
    else:
        image_row, image_col, image_width = runs.row, runs.col, masks.shape[2]
    block = (image_row // 2) * ((image_width + 1) // 2) + image_col // 2
    component_block = torch.full_like(block, torch.iinfo(torch.long).max)
    component_block.scatter_reduce_(0, runs.root, block, reduce="amin")
    last_block = masks.shape[1] * masks.shape[2]
    rank = runs.component_size * (last_block + 1) + (last_block - component_block[runs.root])
    best_rank = torch.full((count,), -1, dtype=torch.long, device=masks.device)
    best_rank.scatter_reduce_(0, runs.mask, rank, reduce="amax")
    keep = ~small | (~has_large[runs.mask] & (rank == best_rank[runs.mask]))
    return _paint(masks.shape, runs, keep), _any_per_mask(runs.mask, small, count)


def label_components(regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """8-connected components of the set pixels of each of (M, A, B) bool masks.

    Returns:
        labels: (M, A, B) int64, 0 on unset pixels, else a component id (ids are distinct across
            all masks, not consecutive; equal ids mean one component);
        areas: (M, A, B) int64, the pixel count of each set pixel's component, 0 on unset pixels.
    """
    runs = _label_components(regions.contiguous())
    return _paint_values(regions.shape, runs, runs.root + 1), _paint_values(regions.shape, runs, runs.component_size)


def small_region_pixels(regions: torch.Tensor, max_area: float) -> torch.Tensor:
    """(M, A, B) bool -> (M, A, B) bool: the pixels of 8-connected regions of at most ``max_area`` pixels."""
    areas = label_components(regions)[1]
    return (areas > 0) & (areas <= max_area)


HOLE_LOGIT_OFFSET = 10.0
"""A filled hole gets threshold + this, a removed sprinkle threshold - this (the official SAM 2 values)."""


@dataclass(frozen=True)
class RegionCleanup:
    """SAM 2's clean-up of low-res logits before they are resized (the official predictor's
    ``max_hole_area`` / ``max_sprinkle_area``; the mask generator's ``min_mask_region_area``).
    Called on (P, C, h, w) logits it returns them cleaned (a SAM 2 decoder's ``cleanup``,
    ``promptseg.decoders.sam2.LowResCleanup``).

    Attributes:
        mask_threshold: logits above it are foreground (the predictor's ``mask_threshold``).
        max_hole_area: background regions (8-connected) of at most this many low-res pixels are set
            to ``mask_threshold + 10``; 0 turns it off.
        max_sprinkle_area: foreground regions of at most this many pixels are set to
            ``mask_threshold - 10``; 0 turns it off. Both are found on the logits as given.
    """

    mask_threshold: float = 0.0
    max_hole_area: float = 0.0
    max_sprinkle_area: float = 0.0

    @property
    def active(self) -> bool:
        return self.max_hole_area > 0 or self.max_sprinkle_area > 0

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """(P, C, h, w) float logits -> a new tensor with small holes filled and sprinkles removed."""
        if not self.active:
            return logits
        foreground = (logits > self.mask_threshold).flatten(0, 1)
        if self.max_hole_area > 0:
            holes = small_region_pixels(~foreground, self.max_hole_area).reshape_as(logits)
            logits = torch.where(holes, self.mask_threshold + HOLE_LOGIT_OFFSET, logits)
        if self.max_sprinkle_area > 0:
            sprinkles = small_region_pixels(foreground, self.max_sprinkle_area).reshape_as(logits)
            logits = torch.where(sprinkles, self.mask_threshold - HOLE_LOGIT_OFFSET, logits)
        return logits


def _label_components(foreground: torch.Tensor) -> _Runs:
    """Runs of set pixels of (M, A, B) contiguous bool masks and their 8-connected components."""
    _, rows, cols = foreground.shape
    starts = foreground.clone()
    starts[..., 1:] &= ~foreground[..., :-1]
    ends = foreground.clone()
    ends[..., :-1] &= ~foreground[..., 1:]
    start = starts.view(-1).nonzero().squeeze(1)
    end = ends.view(-1).nonzero().squeeze(1)
    row_of_all = start // cols  # row over all masks: mask * rows + row
    col, end_col = start % cols, end % cols

    # Key (row, column) pairs so that columns -1..cols of one row sort between the rows around it.
    spacing = cols + 2
    start_key = row_of_all * spacing + col + 1
    end_key = row_of_all * spacing + end_col + 1
    row_above = row_of_all - 1
    # Runs of the row above touching [col - 1, end_col + 1] are a contiguous range [first, stop).
    first = torch.searchsorted(end_key, row_above * spacing + col)
    stop = torch.searchsorted(start_key, row_above * spacing + end_col + 2, right=True)
    touching = torch.where(row_of_all % rows > 0, (stop - first).clamp(min=0), 0)
    run_index = torch.arange(len(start), device=start.device)
    lower = torch.repeat_interleave(run_index, touching)
    offsets = torch.cumsum(touching, 0) - touching
    upper = torch.repeat_interleave(first - offsets, touching) + torch.arange(len(lower), device=start.device)

    root = _union_find(run_index.clone(), upper, lower)
    length = end - start + 1
    size = torch.zeros_like(length).index_add_(0, root, length)
    return _Runs(
        start=start,
        length=length,
        mask=row_of_all // rows,
        row=row_of_all % rows,
        col=col,
        root=root,
        component_size=size[root],
    )


def _union_find(parent: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Roots of the forest ``parent`` after joining each pair (left[i], right[i]).

    A root is the smallest index of its component.

    Rounds of hooking (each root that an edge crosses points to the smallest
    root it touches) and pointer jumping, until no edge crosses two components.
    """
    while len(left):
        left_root, right_root = parent[left], parent[right]
        crossing = left_root != right_root
        left, right = left[crossing], right[crossing]
        left_root, right_root = left_root[crossing], right_root[crossing]
        if len(left) == 0:
            break
        parent.scatter_reduce_(
            0, torch.maximum(left_root, right_root), torch.minimum(left_root, right_root), reduce="amin"
        )
        while True:
            grandparent = parent[parent]
            if torch.equal(grandparent, parent):
                break
            parent = grandparent
    return parent


def _paint(shape: torch.Size, runs: _Runs, selected: torch.Tensor) -> torch.Tensor:
    """(M, A, B) bool with the pixels of the selected runs set: +1 at each run start, -1 after its end, prefix sum."""
    edges = torch.zeros(shape.numel() + 1, dtype=torch.int8, device=runs.start.device)
    weight = selected.to(torch.int8)
    edges.index_add_(0, runs.start, weight)
    edges.index_add_(0, runs.start + runs.length, -weight)
    return (edges[:-1].cumsum(0, dtype=torch.int8) > 0).view(shape)


def _paint_values(shape: torch.Size, runs: _Runs, values: torch.Tensor) -> torch.Tensor:
    """(M, A, B) int64 holding each run's value on its pixels and 0 elsewhere (runs never overlap)."""
    edges = torch.zeros(shape.numel() + 1, dtype=torch.long, device=runs.start.device)
    edges.index_add_(0, runs.start, values)
    edges.index_add_(0, runs.start + runs.length, -values)
    return edges[:-1].cumsum(0).view(shape)


def _any_per_mask(mask_index: torch.Tensor, flags: torch.Tensor, count: int) -> torch.Tensor:
    """(count,) bool: whether any run of each mask is flagged."""
    hits = torch.zeros(count, dtype=torch.long, device=flags.device)
    return hits.index_add_(0, mask_index, flags.long()) > 0
