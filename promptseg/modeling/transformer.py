"""The two-way transformer of the mask decoder: prompt tokens and image tokens attend to each other.

Module and parameter names follow the official model. Attention math, with its projections, lives
behind :func:`promptseg.ops.projected_attention` (over :func:`promptseg.ops.token_attention`).

The first block also has a gathered form (a promptseg addition, public for the fused decoder):
what it computes from the image tokens alone (:class:`ImageSide`, from
:meth:`TwoWayTransformer.image_side`) is computed once per image, and P prompts read those rows
through an index (:meth:`TwoWayTransformer.forward_gathered`, over
:func:`promptseg.ops.gathered_attention_output`) instead of P copies of their image.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from promptseg.modeling.common import LayerNorm, MLPBlock
from promptseg.ops import Projections, gathered_attention_output, projected_attention


class ImageSide(NamedTuple):
    """What the first two-way block computes from B rows of image tokens alone (no prompt).

    N image tokens, Ci the attention dim of the cross-attentions (``embedding_dim / downsample_rate``).

    Attributes:
        keys: (B, N, Ci) the token->image keys, ``k_proj(image_tokens + image_pos)``.
        values: (B, N, Ci) the token->image values, ``v_proj(image_tokens)``.
        queries: (B, N, Ci) the image->token queries, ``q_proj(image_tokens + image_pos)``.
    """

    keys: torch.Tensor
    values: torch.Tensor
    queries: torch.Tensor


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

    def image_side(self, image_tokens: torch.Tensor, image_pos: torch.Tensor) -> ImageSide:
        """The first block's prompt-independent work (see :meth:`TwoWayAttentionBlock.image_side`)."""
        return self.layers[0].image_side(image_tokens, image_pos)

    def image_side_tensors(self) -> list[torch.Tensor]:
        """The weights :meth:`image_side` reads (see :meth:`TwoWayAttentionBlock.image_side_tensors`)."""
        return self.layers[0].image_side_tensors()

    def forward_gathered(
        self,
        point_embedding: torch.Tensor,
        image_tokens: torch.Tensor,
        image_pos: torch.Tensor,
        image_side: ImageSide,
        index: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for P prompts whose image tokens are rows of a shared table.

        Args:
            point_embedding: (P, T, C) tokens (output tokens then prompt tokens).
            image_tokens: (B, N, C) image tokens (plus dense prompt embedding) of the table's rows.
            image_pos: (1, N, C) positional encoding of the image tokens.
            image_side: :meth:`image_side` of ``image_tokens`` and ``image_pos``.
            index: (P,) int64, the table row of each prompt.
            key_padding_mask: (P, T) bool, False for padding tokens, or None.
        Returns:
            (P, T, C) processed tokens and (P, N, C) processed image tokens, equal to
            :meth:`forward` on ``image_tokens[index]``.
        """
        queries, keys = self.layers[0].forward_gathered(
            point_embedding, point_embedding, image_tokens, image_side, index, key_padding_mask
        )
        return self.run_layers(queries, keys, point_embedding, image_pos, key_padding_mask, first_layer=1)


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
        queries = self._token_self_attention(queries, query_pe, key_padding_mask)
        keys_with_pe = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=queries + query_pe, k=keys_with_pe, v=keys))
        queries = self.norm3(queries + self.mlp(queries))

        image_update = self.cross_attn_image_to_token(
            q=keys_with_pe, k=queries + query_pe, v=queries, key_padding_mask=key_padding_mask
        )
        keys = self.norm4(keys + image_update)
        return queries, keys

    def image_side(self, keys: torch.Tensor, key_pe: torch.Tensor) -> ImageSide:
        """What :meth:`forward` computes from the image tokens alone, for :meth:`forward_gathered`.

        Args:
            keys: (B, N, C) image tokens.
            key_pe: (B or 1, N, C) their positional encoding.
        Returns:
            The (B, N, Ci) projections of :class:`ImageSide`.
        """
        keys_with_pe = keys + key_pe
        to_image, to_token = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        return ImageSide(to_image.k_proj(keys_with_pe), to_image.v_proj(keys), to_token.q_proj(keys_with_pe))

    def image_side_tensors(self) -> list[torch.Tensor]:
        """Every weight tensor :meth:`image_side` reads (for a cache of its results to check)."""
        projections = (
            self.cross_attn_token_to_image.k_proj,
            self.cross_attn_token_to_image.v_proj,
            self.cross_attn_image_to_token.q_proj,
        )
        return [tensor for projection in projections for tensor in projection.parameters()]

    def forward_gathered(
        self,
        queries: torch.Tensor,
        query_pe: torch.Tensor,
        keys: torch.Tensor,
        image_side: ImageSide,
        index: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for P prompts on rows of shared image tokens, read through ``index``.

        Args:
            queries: (P, T, C) tokens, ``query_pe`` (P, T, C) their positional encoding.
            keys: (B, N, C) image tokens of the B rows.
            image_side: :meth:`image_side` of ``keys`` (and their positional encoding).
            index: (P,) int64, the row of each prompt.
            key_padding_mask: (P, T) bool, False for padding tokens, or None.
        Returns:
            (P, T, C) tokens and (P, N, C) image tokens, equal to :meth:`forward` on ``keys[index]``
            (the image tokens are gathered once, at the residual; attention reads the rows by index).
        """
        queries = self._token_self_attention(queries, query_pe, key_padding_mask)
        to_image = self.cross_attn_token_to_image
        attended = to_image.attend_projected(
            to_image.q_proj(queries + query_pe), image_side.keys, image_side.values, kv_index=index
        )
        queries = self.norm2(queries + attended)
        queries = self.norm3(queries + self.mlp(queries))
        to_token = self.cross_attn_image_to_token
        image_update = to_token.attend_projected(
            image_side.queries, to_token.k_proj(queries + query_pe), to_token.v_proj(queries), key_padding_mask,
            q_index=index,
        )
        rows = keys if keys.shape[0] == 1 else keys[index]
        return queries, self.norm4(rows + image_update)

    def _token_self_attention(
        self, queries: torch.Tensor, query_pe: torch.Tensor, key_padding_mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """The block's first step: token self-attention (no positional encoding and no residual in
        SAM's first block), then ``norm1``."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries, key_padding_mask=key_padding_mask)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries, key_padding_mask=key_padding_mask)
        return self.norm1(queries)


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
        projections = Projections(self.q_proj, self.k_proj, self.v_proj, self.out_proj)
        return projected_attention(q, k, v, projections, self.num_heads, key_padding_mask, backend=self.backend)

    def attend_projected(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding_mask: Optional[torch.Tensor] = None,
        q_index: Optional[torch.Tensor] = None,
        kv_index: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Attention on inputs already through ``q_proj``/``k_proj``/``v_proj``, rows gathered by index.

        Args:
            q: (Bq, Nq, Ci) projected queries; k, v: (Bk, Nk, Ci) projected keys and values.
            key_padding_mask: (P, Nk) bool, False for keys never attended to, or None.
            q_index, kv_index: (P,) int64 rows of ``q`` / of ``k`` and ``v`` for each of P outputs,
                or None where that input already has P rows.
        Returns:
            (P, Nq, C): ``out_proj`` of :func:`promptseg.ops.gathered_token_attention`.
        """
        return gathered_attention_output(
            q, k, v, self.out_proj, self.num_heads, key_padding_mask, q_index, kv_index, backend=self.backend
        )
