"""The two-way transformer's cross-attentions on the CPU, with the image-side projections folded away.

In SAM's decoder a prompt has a handful of tokens (T: 5 output tokens plus its points; 7 for a
click) and the image a grid of N tokens (vit_b: 4096). Each cross-attention projects the N image
tokens through (C, Ci) weights (vit_b: 256 -> 128), N * C * Ci multiply-adds, and again through the
output projection; the attention itself is N * T * Ci. Because T * heads is smaller than Ci,
re-associating the products moves the projections onto the few tokens:

* image -> token (N queries, T keys): per head, ``(X Wq_h^T + bq_h) K_h^T = X (Wq_h^T K_h^T) + bq_h K_h^T``,
  so the logits of all heads are one (heads*T, C) x (C, N) GEMM with the folded (C, heads*T)
  weights; and ``concat_h(P_h V_h) Wo^T = sum_h P_h (V_h Wo_h^T)``, one (N, heads*T) x (heads*T, C) GEMM;
* token -> image (T queries, N keys): ``Q_h (X Wk_h^T + bk_h)^T = (Q_h Wk_h) X^T + Q_h bk_h^T``, and
  ``P_h (X Wv_h^T + bv_h) = (P_h X) Wv_h^T + bv_h`` (each row of P_h sums to 1).

Each side's two GEMMs shrink from C*Ci to C*heads*T per image token: 2.3x fewer multiply-adds for a
vit_b click. The softmax of the image->token logits runs along their long axis, as in
:mod:`promptseg.ops.cpu_token_attention`. The results equal the reference's to float32 rounding
(the sums run in another order). :func:`folding_pays` says where the folded form has fewer
multiply-adds by a clear margin; elsewhere the caller keeps the projections.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import nn


class Projections(NamedTuple):
    """The four projections of one attention: q, k, v (C -> Ci) and out (Ci -> C)."""

    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    out: nn.Linear


def folding_pays(few: int, num_heads: int, internal_dim: int) -> bool:
    """Whether folding the image-side projections into an attention with ``few`` tokens on its short
    side saves at least a quarter of their multiply-adds (heads * few <= 3/4 of the internal dim)."""
    return 4 * num_heads * few <= 3 * internal_dim


def image_to_token_cpu(
    image: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    q_proj: Optional[nn.Linear],
    out_proj: nn.Linear,
    num_heads: int,
    key_padding_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``out_proj(attention(q, keys, values))`` for N image-token queries over T token keys.

    Args:
        image: (P or 1, N, C) image tokens (with their positional encoding) when ``q_proj`` is given,
            else their (P or 1, N, Ci) projected queries.
        keys, values: (P, T, Ci) projected token keys and values.
        q_proj: the query projection to fold, or None for projected queries.
        out_proj: the output projection (Ci -> C), folded into the values.
        key_padding_mask: (P, T) bool, False for padding tokens, or None.
    Returns:
        (P, N, C).
    """
    prompts, n_keys, internal = keys.shape
    head_dim = internal // num_heads
    scale = 1.0 / math.sqrt(head_dim)
    keys_heads = keys.reshape(prompts, n_keys, num_heads, head_dim)
    if q_proj is not None:  # (P, heads*T, C) folded weights and (P, heads*T, 1) bias of the logits
        weight = q_proj.weight.view(num_heads, head_dim, -1)
        folded = torch.einsum("pthd,hdc->phtc", keys_heads, weight).mul_(scale).reshape(prompts, num_heads * n_keys, -1)
        bias = torch.einsum("pthd,hd->pht", keys_heads, q_proj.bias.view(num_heads, head_dim)).mul_(scale)
        logits = _image_major_logits(image.expand(prompts, -1, -1), folded, bias)
    else:
        queries = image.expand(prompts, -1, -1).reshape(prompts, -1, num_heads, head_dim)
        logits = torch.matmul(keys_heads.transpose(1, 2), queries.permute(0, 2, 3, 1)).mul_(scale)
    logits = logits.view(prompts, num_heads, n_keys, -1)  # (P, heads, T, N)
    if key_padding_mask is not None:
        logits.masked_fill_(~key_padding_mask[:, None, :, None], float("-inf"))
    probs = torch.softmax(logits, dim=-2).view(prompts, num_heads * n_keys, -1)
    # (P, heads*T, C): each token's value through its head's slice of the output projection
    out_weight = out_proj.weight.view(-1, num_heads, head_dim)
    values_out = torch.einsum("pthd,chd->phtc", values.reshape(prompts, n_keys, num_heads, head_dim), out_weight)
    values_out = values_out.reshape(prompts, num_heads * n_keys, -1)
    return torch.baddbmm(out_proj.bias, probs.transpose(1, 2), values_out)


def token_to_image_cpu(
    queries: torch.Tensor,
    image_keys: torch.Tensor,
    image_values: torch.Tensor,
    projections: Projections,
    num_heads: int,
) -> torch.Tensor:
    """``out_proj(attention(q_proj(queries), k_proj(image_keys), v_proj(image_values)))`` for T token
    queries over N image tokens, the key and value projections folded.

    Args:
        queries: (P, T, C) tokens (with their positional encoding).
        image_keys: (P, N, C) image tokens with their positional encoding; image_values: (P, N, C).
    Returns:
        (P, T, C).
    """
    prompts, n_queries, _ = queries.shape
    k_weight = projections.k.weight
    internal = k_weight.shape[0]
    head_dim = internal // num_heads
    scale = 1.0 / math.sqrt(head_dim)
    query_heads = projections.q(queries).reshape(prompts, n_queries, num_heads, head_dim)
    folded = torch.einsum("pthd,hdc->phtc", query_heads, k_weight.view(num_heads, head_dim, -1)).mul_(scale)
    bias = torch.einsum("pthd,hd->pht", query_heads, projections.k.bias.view(num_heads, head_dim)).mul_(scale)
    logits = _image_major_logits(image_keys, folded.reshape(prompts, num_heads * n_queries, -1), bias)
    probs = torch.softmax(logits, dim=-1)  # (P, heads*T, N)
    mixed = torch.bmm(probs, image_values).view(prompts, num_heads, n_queries, -1)  # (P, heads, T, C)
    out = torch.einsum("phtc,hdc->pthd", mixed, projections.v.weight.view(num_heads, head_dim, -1))
    out = out.reshape(prompts, n_queries, internal) + projections.v.bias
    return projections.out(out)


def _image_major_logits(image: torch.Tensor, folded: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(P, heads*T, N) logits ``folded @ image^T + bias`` of (P, N, C) image tokens, (P, heads*T, C) folded
    weights and a (P, heads, T) bias; computed image-major, ``image @ folded^T`` (N rows: a GEMM shape the
    CPU runs ~1.5x faster than 56 rows of 4096 columns), then transposed to contiguous rows per head."""
    prompts = image.shape[0]
    logits = torch.baddbmm(bias.reshape(prompts, 1, -1), image, folded.transpose(1, 2))  # (P, N, heads*T)
    return logits.transpose(1, 2).contiguous()
