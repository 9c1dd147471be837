"""Partitioning a token grid into non-overlapping square windows and back.

Eagerly, each direction is one copy: the windows (or the grid) are allocated once and written
through strided views of at most four rectangular pieces (the full windows, then the partial last
row and column of windows); padded tokens are filled in place. Under ``torch.onnx.export`` (and
any TorchScript trace) both functions take an export-friendly form instead: every size but the
batch read as a Python int, so it becomes a constant of the graph, every reshape leaving only the
leading dim to infer, and the padding a Pad (plus a masked add) rather than writes in place.
Both forms give the same values.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from promptseg.ops.eager import exporting


def partition_windows(
    x: torch.Tensor, window_size: int, pad_value: torch.Tensor | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split a (B, H, W, C) grid into (B * nH * nW, ws, ws, C) windows.

    The grid is padded at the bottom and right up to a multiple of ``window_size``.
    Padded tokens hold ``pad_value`` (a (C,) vector, broadcast) or zeros when None.
    Returns the windows and the padded grid size (Hp, Wp).
    """
    if exporting():
        return _partition_traceable(x, window_size, pad_value)
    batch, height, width, channels = (int(size) for size in x.shape)
    padded_h, padded_w = height + -height % window_size, width + -width % window_size
    rows, columns = padded_h // window_size, padded_w // window_size
    windows = x.new_empty(batch * rows * columns, window_size, window_size, channels)
    by_window = windows.view(batch, rows, columns, window_size, window_size, channels)
    fill = 0.0 if pad_value is None else pad_value.to(x.dtype)
    if padded_h > height:  # the rows below the grid, in the last row of windows
        by_window[:, -1, :, height % window_size :] = fill
    if padded_w > width:  # the columns right of the grid, in the last column of windows
        by_window[:, :, -1, :, width % window_size :] = fill
    for grid_piece, window_piece in _pieces(x, by_window, window_size, (height, width)):
        window_piece.copy_(grid_piece)
    return windows, (padded_h, padded_w)


def unpartition_windows(
    windows: torch.Tensor, window_size: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`partition_windows`: (B * nH * nW, ws, ws, C) -> (B, H, W, C), padding dropped."""
    if exporting():
        return _unpartition_traceable(windows, window_size, padded_hw, hw)
    padded_h, padded_w = padded_hw
    height, width = hw
    rows, columns = padded_h // window_size, padded_w // window_size
    channels = int(windows.shape[-1])
    by_window = windows.reshape(-1, rows, columns, window_size, window_size, channels)
    grid = windows.new_empty(by_window.shape[0], height, width, channels)
    for grid_piece, window_piece in _pieces(grid, by_window, window_size, (height, width)):
        grid_piece.copy_(window_piece)
    return grid


def _pieces(
    grid: torch.Tensor, by_window: torch.Tensor, window_size: int, hw: tuple[int, int]
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Matching (B, a, r, b, c, C) views of a (B, H, W, C) grid and of its (B, nH, nW, ws, ws, C)
    windows, covering the grid in at most four rectangles: the full windows, the partial last row
    of windows, the partial last column, and their corner. A view of the grid that cannot be a
    strided view (a non-contiguous input) is a copy, which is only ever read."""
    batch, channels = by_window.shape[0], by_window.shape[-1]
    spans = []
    for size in hw:
        full = size - size % window_size
        parts = [(0, full, full // window_size, window_size)] if full else []
        if size > full:  # (first pixel, last pixel + 1, windows, pixels per window)
            parts.append((full, size, 1, size - full))
        spans.append(parts)
    for top, bottom, row_windows, row_pixels in spans[0]:
        for left, right, column_windows, column_pixels in spans[1]:
            grid_piece = grid[:, top:bottom, left:right].reshape(
                batch, row_windows, row_pixels, column_windows, column_pixels, channels
            )
            first_row, first_column = top // window_size, left // window_size
            window_piece = by_window[
                :, first_row : first_row + row_windows, first_column : first_column + column_windows,
                :row_pixels, :column_pixels,
            ].permute(0, 1, 3, 2, 4, 5)
            yield grid_piece, window_piece


def _partition_traceable(
    x: torch.Tensor, window_size: int, pad_value: torch.Tensor | None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`partition_windows` in the form that traces into a graph ONNX Runtime and TensorRT take."""
    height, width, channels = (int(size) for size in x.shape[1:])
    pad_h, pad_w = -height % window_size, -width % window_size
    padded_h, padded_w = height + pad_h, width + pad_w
    if pad_h or pad_w:
        pads = (0, 0, 0, pad_w, 0, pad_h)
        x = F.pad(x, pads)
        if pad_value is not None:
            # (1, Hp, Wp, 1): 1 at the padded tokens, 0 elsewhere; made of constants only when traced
            is_padding = F.pad(x.new_zeros(1, height, width, 1), pads, value=1.0)
            x = x + is_padding * pad_value.to(x.dtype)
    windows = x.reshape(-1, padded_h // window_size, window_size, padded_w // window_size, window_size, channels)
    windows = windows.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, channels)
    return windows, (padded_h, padded_w)


def _unpartition_traceable(
    windows: torch.Tensor, window_size: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """:func:`unpartition_windows` in the form that traces into a graph ONNX Runtime and TensorRT take."""
    padded_h, padded_w = padded_hw
    height, width = hw
    channels = int(windows.shape[-1])
    x = windows.reshape(-1, padded_h // window_size, padded_w // window_size, window_size, window_size, channels)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, padded_h, padded_w, channels)
    return x[:, :height, :width].contiguous()
