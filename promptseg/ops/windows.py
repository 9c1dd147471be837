"""Partitioning a token grid into non-overlapping square windows and back."""

from __future__ import annotations

import torch


def partition_windows(
    x: torch.Tensor, window_size: int, pad_value: torch.Tensor | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split a (B, H, W, C) grid into (B * nH * nW, ws, ws, C) windows.

    The grid is padded at the bottom and right up to a multiple of ``window_size``.
    Padded tokens hold ``pad_value`` (a (C,) vector, broadcast) or zeros when None.
    Returns the windows and the padded grid size (Hp, Wp).
    """
    batch, height, width, channels = x.shape
    pad_h = (window_size - height % window_size) % window_size
    pad_w = (window_size - width % window_size) % window_size
    padded_h, padded_w = height + pad_h, width + pad_w
    if pad_h or pad_w:
        padded = x.new_zeros(batch, padded_h, padded_w, channels)
        if pad_value is not None:
            padded[:] = pad_value.to(x.dtype)
        padded[:, :height, :width] = x
        x = padded
    windows = x.view(batch, padded_h // window_size, window_size, padded_w // window_size, window_size, channels)
    windows = windows.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, channels)
    return windows, (padded_h, padded_w)


def unpartition_windows(
    windows: torch.Tensor, window_size: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`partition_windows`: (B * nH * nW, ws, ws, C) -> (B, H, W, C), padding dropped."""
    padded_h, padded_w = padded_hw
    height, width = hw
    n_h, n_w = padded_h // window_size, padded_w // window_size
    batch = windows.shape[0] // (n_h * n_w)
    x = windows.view(batch, n_h, n_w, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, padded_h, padded_w, -1)
    return x[:, :height, :width].contiguous()
