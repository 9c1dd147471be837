"""Partitioning a token grid into non-overlapping square windows and back.

Both functions trace into export-friendly graphs (``torch.onnx.export``): every size but the batch
is read as a Python int, so it becomes a constant of the graph, every reshape leaves only the
leading dim to infer, and the padding is a Pad (plus a masked add) rather than writes in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def partition_windows(
    x: torch.Tensor, window_size: int, pad_value: torch.Tensor | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split a (B, H, W, C) grid into (B * nH * nW, ws, ws, C) windows.

    The grid is padded at the bottom and right up to a multiple of ``window_size``.
    Padded tokens hold ``pad_value`` (a (C,) vector, broadcast) or zeros when None.
    Returns the windows and the padded grid size (Hp, Wp).
    """
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


def unpartition_windows(
    windows: torch.Tensor, window_size: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`partition_windows`: (B * nH * nW, ws, ws, C) -> (B, H, W, C), padding dropped."""
    padded_h, padded_w = padded_hw
    height, width = hw
    channels = int(windows.shape[-1])
    x = windows.reshape(-1, padded_h // window_size, padded_w // window_size, window_size, window_size, channels)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, padded_h, padded_w, channels)
    return x[:, :height, :width].contiguous()
