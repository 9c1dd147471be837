"""The mask decoder's attentions with their projections: what ``Attention.forward`` (q/k/v projections,
:func:`promptseg.ops.token_attention`, output projection) and ``Attention.attend_projected`` (the
gathered attention of projected rows, output projection) compute.

Everywhere but the CPU these are the composition of the projections and the attention op (which
takes promptseg's kernels where they run). On CPU float32 inputs with no gradient wanted, outside
traces and with ``backend`` not ``"reference"``, a cross-attention between a few tokens and the
image grid folds its image-side projections into the few tokens
(:mod:`promptseg.ops.cpu_folded_attention`) where that saves multiply-adds
(:func:`~promptseg.ops.cpu_folded_attention.folding_pays`); the results equal the composition's to
float32 rounding.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from promptseg.ops.cpu_folded_attention import Projections, folding_pays, image_to_token_cpu, token_to_image_cpu
from promptseg.ops.decoder_attention import (
    check_key_padding_mask,
    gathered_token_attention,
    take_rows,
    token_attention,
)
from promptseg.ops.eager import cpu_float32_eager


def projected_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    projections: Projections,
    num_heads: int,
    key_padding_mask: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``out(token_attention(q_proj(q), k_proj(k), v_proj(v)))``.

    Args:
        q: (B, Nq, C) queries; k, v: (B, Nk, C_kv) keys and values.
        projections: the q, k, v (-> Ci) and output (Ci -> C) projections.
        num_heads: heads; head_dim = Ci // num_heads.
        key_padding_mask: (B, Nk) bool, False for keys that only pad a batch, or None.
        backend: see :data:`promptseg.ops.BACKENDS`.
    Returns:
        (B, Nq, C).
    """
    if backend != "reference" and _folds(q, k, v, projections, num_heads):
        _check_batches(q, k, v, key_padding_mask)
        if k.shape[1] < q.shape[1]:
            keys, values = projections.k(k), projections.v(v)
            return image_to_token_cpu(q, keys, values, projections.q, projections.out, num_heads, key_padding_mask)
        if key_padding_mask is None:
            return token_to_image_cpu(q, k, v, projections, num_heads)
    out = token_attention(projections.q(q), projections.k(k), projections.v(v), num_heads, key_padding_mask, backend)
    return projections.out(out)


def gathered_attention_output(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out_proj: nn.Linear,
    num_heads: int,
    key_padding_mask: Optional[torch.Tensor] = None,
    q_index: Optional[torch.Tensor] = None,
    kv_index: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``out_proj(gathered_token_attention(q, k, v, ...))`` of projected rows (arguments as
    :func:`promptseg.ops.gathered_token_attention`).

    Returns:
        (P, Nq, C).
    """
    few_keys = kv_index is None and k.dim() == 3 and q.dim() == 3 and k.shape[1] < q.shape[1]
    if (
        backend != "reference"
        and few_keys
        and folding_pays(k.shape[1], num_heads, k.shape[2])
        and cpu_float32_eager(q, k, v, out_proj.weight, out_proj.bias)
    ):
        image = _gathered_queries(q, q_index, k.shape[0])
        _check_batches(image, k, v, key_padding_mask)
        return image_to_token_cpu(image, k, v, None, out_proj, num_heads, key_padding_mask)
    out = gathered_token_attention(q, k, v, num_heads, key_padding_mask, q_index=q_index, kv_index=kv_index, backend=backend)
    return out_proj(out)


def _folds(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projections: Projections, num_heads: int) -> bool:
    """Whether :func:`projected_attention` takes the folded CPU form for these inputs."""
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3 or k.shape[1] != v.shape[1] or q.shape[0] != k.shape[0]:
        return False
    few = min(q.shape[1], k.shape[1])
    if q.shape[1] == k.shape[1] or not folding_pays(few, num_heads, projections.q.out_features):
        return False
    weights = [tensor for projection in projections for tensor in (projection.weight, projection.bias)]
    return all(tensor is not None for tensor in weights) and cpu_float32_eager(q, k, v, *weights)


def _gathered_queries(q: torch.Tensor, q_index: Optional[torch.Tensor], prompts: int) -> torch.Tensor:
    """The (P, N, Ci) query rows of ``q`` that ``q_index`` picks (an expanded view where every prompt
    reads one row), or ``q`` itself without an index."""
    if q_index is None:
        return q
    if q_index.dim() != 1 or q_index.dtype != torch.int64 or q_index.shape[0] != prompts:
        raise ValueError(f"q_index must be a ({prompts},) int64 tensor, got {q_index.dtype} {tuple(q_index.shape)}")
    if q_index.numel() and (int(q_index.min()) < 0 or int(q_index.max()) >= q.shape[0]):
        raise IndexError(f"q_index holds rows outside [0, {q.shape[0]}): {q_index.tolist()}")
    return take_rows(q, q_index)


def _check_batches(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor]
) -> None:
    """Batch and length agreement of the folded form's inputs (queries of batch 1 serve every prompt)."""
    if q.shape[0] not in (1, k.shape[0]) or v.shape[0] != k.shape[0]:
        raise ValueError(
            f"attention expects q (B, Nq, C) and k, v (B, Nk, C); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    check_key_padding_mask(key_padding_mask, k)
