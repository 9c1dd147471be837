"""Windowing and patch embedding of the Hiera trunk, under the official
``sam2.modeling.backbones.utils`` path. The windowing is :mod:`promptseg.ops`' (zero padding at the
bottom and right, windows in raster order), shared with the SAM 1 encoder."""

from __future__ import annotations

import torch

from promptseg.modeling import image_encoder as sam_image_encoder
from promptseg.ops import partition_windows, unpartition_windows

__all__ = ["PatchEmbed", "window_partition", "window_unpartition"]


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) grid -> (B * nH * nW, ws, ws, C) windows and the zero-padded grid size (Hp, Wp)."""
    return partition_windows(x, window_size)


def window_unpartition(
    windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """(B * nH * nW, ws, ws, C) windows of a (Hp, Wp) = ``pad_hw`` grid -> (B, H, W, C), padding dropped."""
    return unpartition_windows(windows, window_size, pad_hw, hw)


class PatchEmbed(sam_image_encoder.PatchEmbed):
    """Overlapping patch projection (a strided conv): (B, C, H, W) -> (B, H', W', embed_dim).

    SAM's patch embedding with SAM 2's defaults (7x7 kernel, stride 4, padding 3).
    """

    def __init__(
        self,
        kernel_size: tuple[int, ...] = (7, 7),
        stride: tuple[int, ...] = (4, 4),
        padding: tuple[int, ...] = (3, 3),
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__(kernel_size, stride, padding, in_chans, embed_dim)
