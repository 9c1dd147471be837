"""Multi-head attention of the mask decoder's two-way transformer (after the q/k/v projections)."""

from __future__ import annotations

import math

import torch

from promptseg.ops.dispatch import kernel_for
from promptseg.ops.precision import statistics_dtype


def token_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(head_dim)) v`` per head, for token/image attention in the decoder.

    Args:
        q: (B, Nq, C) projected queries.
        k, v: (B, Nk, C) projected keys and values.
        num_heads: number of heads; head_dim = C // num_heads.
        key_padding_mask: (B, Nk) bool, True for keys that take part, False for
            keys that only pad a batch of prompts of different lengths; None
            when every key takes part.
        backend: see :data:`promptseg.ops.dispatch.BACKENDS`.
    Returns:
        (B, Nq, C) attention output before the output projection.
    """
    kernel = kernel_for("token_attention", q, k, v, backend=backend)
    if kernel is not None:
        return kernel(q, k, v, num_heads, key_padding_mask)
    return token_attention_reference(q, k, v, num_heads, key_padding_mask)


def token_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_heads: int,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pure-PyTorch :func:`token_attention`; softmax statistics in fp32."""
    _check_inputs(q, k, v, num_heads, key_padding_mask)
    batch, n_queries, channels = q.shape
    head_dim = channels // num_heads
    q_heads = _split_heads(q, num_heads)
    k_heads = _split_heads(k, num_heads)
    v_heads = _split_heads(v, num_heads)
    logits = q_heads @ k_heads.transpose(-2, -1)
    logits = logits / math.sqrt(head_dim)
    logits = logits.to(statistics_dtype(logits.dtype))
    if key_padding_mask is not None:
        logits = logits.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
    probs = torch.softmax(logits, dim=-1).to(v.dtype)
    out = probs @ v_heads
    return out.transpose(1, 2).reshape(batch, n_queries, channels)


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C // heads)."""
    batch, tokens, channels = x.shape
    return x.reshape(batch, tokens, num_heads, channels // num_heads).transpose(1, 2)


def _check_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, key_padding_mask: torch.Tensor | None
) -> None:
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError(
            f"token_attention expects q, k, v of shape (B, N, C); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(
            f"token_attention expects q (B, Nq, C) and k, v (B, Nk, C); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[2] % num_heads != 0:
        raise ValueError(f"channels {q.shape[2]} are not divisible by num_heads={num_heads}")
    if key_padding_mask is not None and (
        key_padding_mask.dtype != torch.bool or key_padding_mask.shape != k.shape[:2]
    ):
        raise ValueError(
            f"key_padding_mask must be a bool tensor of shape {tuple(k.shape[:2])}, "
            f"got {key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
        )
