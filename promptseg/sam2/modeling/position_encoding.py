"""Position encodings of SAM 2, under the official ``sam2.modeling.position_encoding`` path.

:class:`PositionEmbeddingSine` encodes feature maps of the image encoder (DETR's 2-D sine
encoding); :class:`PositionEmbeddingRandom` (random Fourier features, shared with SAM 1) encodes
prompt coordinates and the decoder's image grid. The rotary encodings of the video memory
attention are not here.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from promptseg.modeling.prompt_encoder import PositionEmbeddingRandom

__all__ = ["PositionEmbeddingRandom", "PositionEmbeddingSine"]


class PositionEmbeddingSine(nn.Module):
    """(B, C, H, W) feature map -> (B, num_pos_feats, H, W) float32 sine encoding of its grid.

    Rows and columns are numbered 1..H and 1..W, scaled to (0, ``scale``] when ``normalize``; the
    first half of the channels encodes y, the second x, alternating sin and cos over frequencies
    ``temperature ** (2 * (i // 2) / (num_pos_feats / 2))``. Encodings are cached per grid size.
    """

    def __init__(
        self,
        num_pos_feats: int,
        temperature: int = 10000,
        normalize: bool = True,
        scale: Optional[float] = None,
        warmup_cache: bool = True,
        image_size: int = 1024,
        strides: tuple[int, ...] = (4, 8, 16, 32),
    ) -> None:
        """
        Args:
            num_pos_feats: channels of the encoding (even).
            temperature, normalize, scale: as in DETR; ``scale`` (default 2 pi) needs ``normalize``.
            warmup_cache, image_size, strides: the official warm-up of the cache for compilation;
                accepted for compatibility (the cache fills on first use).
        """
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("normalize must be True when scale is given")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self.cache: dict[tuple[int, int], torch.Tensor] = {}

    def _axis(self, length: int, device: torch.device) -> torch.Tensor:
        """(length, num_pos_feats) interleaved sin/cos encoding of positions 1..length of one axis."""
        positions = torch.arange(1, length + 1, dtype=torch.float32, device=device)
        if self.normalize:
            last = positions[-1:] + 1e-6
            positions = positions / last * self.scale
        steps = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
        frequencies = self.temperature ** (2 * (steps // 2) / self.num_pos_feats)
        phases = positions[:, None] / frequencies
        return torch.stack((phases[:, 0::2].sin(), phases[:, 1::2].cos()), dim=2).flatten(1)

    @torch.no_grad()
    def _pe(self, B: int, device: torch.device, *cache_key: int) -> torch.Tensor:
        """(B, 2 * num_pos_feats, H, W) encoding of an (H, W) = ``cache_key`` grid."""
        height, width = cache_key
        if cache_key not in self.cache:
            rows = self._axis(height, device)[:, None, :].expand(height, width, -1)
            cols = self._axis(width, device)[None, :, :].expand(height, width, -1)
            self.cache[cache_key] = torch.cat((rows, cols), dim=2).permute(2, 0, 1).contiguous()
        return self.cache[cache_key].to(device)[None].repeat(B, 1, 1, 1)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pe(x.shape[0], x.device, x.shape[-2], x.shape[-1])
