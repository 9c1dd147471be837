"""The two-way transformer of the SAM 2 mask decoder, under the official
``sam2.modeling.sam.transformer`` path.

It is SAM's (:mod:`promptseg.modeling.transformer`: the same blocks, attention through
:func:`promptseg.ops.token_attention`, the same public methods such as ``run_layers``), except that
each block's MLP is SAM 2's :class:`~promptseg.sam2.modeling.sam2_utils.MLP`, whose weights are
``mlp.layers.{0,1}`` where SAM's are ``mlp.lin{1,2}``; and :class:`Attention` takes SAM 2's
``dropout`` and ``kv_in_dim``. The rotary attention of the video memory attention is not here.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from promptseg.modeling import transformer as sam_transformer
from promptseg.sam2.modeling.sam2_utils import MLP

__all__ = ["Attention", "TwoWayAttentionBlock", "TwoWayTransformer"]


class TwoWayTransformer(sam_transformer.TwoWayTransformer):
    """``depth`` two-way blocks, then a final token-to-image attention and LayerNorm (see SAM's)."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__(depth, embedding_dim, num_heads, mlp_dim, activation, attention_downsample_rate)
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=index == 0,
            )
            for index in range(depth)
        )


class TwoWayAttentionBlock(sam_transformer.TwoWayAttentionBlock):
    """Token self-attention, token-to-image attention, token MLP, image-to-token attention (see SAM's)."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__(
            embedding_dim, num_heads, mlp_dim, activation, attention_downsample_rate, skip_first_layer_pe
        )
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=activation)


class Attention(sam_transformer.Attention):
    """Multi-head attention with q/k/v projected to ``embedding_dim // downsample_rate`` (see SAM's).

    Keys and values may have another width (``kv_in_dim``). With ``dropout`` > 0 in training,
    attention runs through ``F.scaled_dot_product_attention`` with that dropout.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        dropout: float = 0.0,
        kv_in_dim: Optional[int] = None,
    ) -> None:
        super().__init__(embedding_dim, num_heads, downsample_rate)
        self.kv_in_dim = kv_in_dim if kv_in_dim is not None else embedding_dim
        if self.kv_in_dim != embedding_dim:
            self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
            self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.dropout_p = dropout

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """(B, Nq, C) queries, (B, Nk, kv_in_dim) keys and values -> (B, Nq, C)."""
        if not (self.training and self.dropout_p > 0.0):
            return super().forward(q, k, v, key_padding_mask)
        heads = [
            x.reshape(x.shape[0], x.shape[1], self.num_heads, -1).transpose(1, 2)
            for x in (self.q_proj(q), self.k_proj(k), self.v_proj(v))
        ]
        mask = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(*heads, attn_mask=mask, dropout_p=self.dropout_p)
        return self.out_proj(out.transpose(1, 2).reshape(q.shape[0], q.shape[1], self.internal_dim))
