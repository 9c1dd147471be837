"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import torch
from torch import nn

from promptseg.ops import layer_norm_fp32


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` whose mean and variance are computed in fp32 for any input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm_fp32(x, self.normalized_shape, self.weight, self.bias, self.eps)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dim of a (B, C, H, W) tensor; statistics in fp32."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.permute(0, 2, 3, 1)
        normed = layer_norm_fp32(channels_last, tuple(self.weight.shape), self.weight, self.bias, self.eps)
        return normed.permute(0, 3, 1, 2)


class MLPBlock(nn.Module):
    """Two linear layers with an activation between them: dim -> mlp_dim -> dim."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))
