"""Small building blocks of the SAM 2 network, under the official ``sam2.modeling.sam2_utils`` path.

``LayerNorm2d`` is promptseg's (the same arithmetic as the official one, statistics in fp32).
The official module's video and training helpers (frame selection, click sampling) are not here.
"""

from __future__ import annotations

import torch
from torch import nn

from promptseg.modeling.common import LayerNorm2d
from promptseg.modeling.mask_decoder import MLP as SamMLP

__all__ = ["DropPath", "LayerNorm2d", "MLP"]


class DropPath(nn.Module):
    """Stochastic depth: in training, zero whole samples with probability ``drop_prob``; identity in eval.

    Kept samples are scaled by 1 / (1 - drop_prob) when ``scale_by_keep``.
    """

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, ...)."""
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        sample_mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        if keep > 0.0 and self.scale_by_keep:
            sample_mask = sample_mask / keep
        return x * sample_mask


class MLP(SamMLP):
    """SAM 2's MLP: SAM's :class:`promptseg.modeling.mask_decoder.MLP` (``layers.{i}.weight/bias``, as in the
    official model) with the official SAM 2 argument order, ``activation`` before ``sigmoid_output``, and
    the official SAM 2 activation module ``act``."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__(input_dim, hidden_dim, output_dim, num_layers, sigmoid_output)
        self.act = activation()

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)
