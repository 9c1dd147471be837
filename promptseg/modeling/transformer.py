"""The two-way transformer of the mask decoder: prompt tokens and image tokens attend to each other.

Module and parameter names follow the official model. Attention math lives behind
:func:`promptseg.ops.token_attention`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from promptseg.modeling.common import LayerNorm, MLPBlock
from promptseg.ops import token_attention


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks followed by a final token-to-image attention."""

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(index == 0),
            )
            for index in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm_final_attn = LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embedding: (B, C, H, W).
            image_pe: (B, C, H, W) positional encoding of the image tokens.
            point_embedding: (B, T, C) tokens (output tokens then prompt tokens).
            key_padding_mask: (B, T) bool, False for tokens that only pad the
                batch; they are never attended to.
        Returns:
            (B, T, C) processed tokens and (B, H*W, C) processed image tokens.
        """
        image_tokens = image_embedding.flatten(2).permute(0, 2, 1)
        image_pos = image_pe.flatten(2).permute(0, 2, 1)
        return self.run_layers(point_embedding, image_tokens, point_embedding, image_pos, key_padding_mask)

    def run_layers(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        point_embedding: torch.Tensor,
        image_pos: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor] = None,
        first_layer: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The blocks from ``first_layer`` on, then the final token-to-image attention.

        Args:
            queries: (B, T, C) tokens entering block ``first_layer``.
            keys: (B, H*W, C) image tokens entering block ``first_layer``.
            point_embedding: (B, T, C) the transformer's input tokens (their positional encoding).
            image_pos: (B or 1, H*W, C) positional encoding of the image tokens.
            key_padding_mask: (B, T) bool, False for padding tokens, or None.
        Returns:
            (B, T, C) processed tokens and (B, H*W, C) processed image tokens.
        """
        for layer in self.layers[first_layer:]:
            queries, keys = layer(queries, keys, point_embedding, image_pos, key_padding_mask)
        attn_out = self.final_attn_token_to_image(q=queries + point_embedding, k=keys + image_pos, v=keys)
        return self.norm_final_attn(queries + attn_out), keys


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, image->token cross-attention."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm2 = LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = LayerNorm(embedding_dim)
        self.norm4 = LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C) tokens and (B, N, C) image tokens -> both updated.

        The first block skips the positional encoding of the tokens and
        replaces them with their self-attention (no residual), as in SAM.
        """
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries, key_padding_mask=key_padding_mask)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries, key_padding_mask=key_padding_mask)
        queries = self.norm1(queries)

        keys_with_pe = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=queries + query_pe, k=keys_with_pe, v=keys))
        queries = self.norm3(queries + self.mlp(queries))

        image_update = self.cross_attn_image_to_token(
            q=keys_with_pe, k=queries + query_pe, v=queries, key_padding_mask=key_padding_mask
        )
        keys = self.norm4(keys + image_update)
        return queries, keys


class Attention(nn.Module):
    """Multi-head attention with q/k/v projections down to embedding_dim / downsample_rate.

    ``backend`` is handed to the op (see :func:`promptseg.ops.set_backend`).
    """

    backend: str = "auto"

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must divide the internal dim {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """(B, Nq, C) queries, (B, Nk, C) keys and values -> (B, Nq, C)."""
        out = token_attention(
            self.q_proj(q), self.k_proj(k), self.v_proj(v), self.num_heads, key_padding_mask, backend=self.backend
        )
        return self.out_proj(out)
