"""The mask decoder's token attention on the CPU, in the layouts a CPU runs fast.

:func:`promptseg.ops.token_attention_reference` takes the softmax along the last dim of the
(B, heads, Nq, Nk) logits. In the decoder's image->token attention Nq is the image grid (vit_b: 4096)
and Nk a handful of prompt tokens (e.g. 7), and a softmax over rows of 7 values is PyTorch's slowest
CPU case: on one core of this project's CPU it took 6 ms of a 6.2 ms attention
(``benchmarks/NOTES.md``, CPU decoder). Here the same arithmetic runs as:

* few keys (Nk < Nq): the logits transposed, (B, heads, Nk, Nq) = ``k q^T``, so the softmax runs
  along dim -2 over long contiguous rows (vectorised across the queries), then
  ``probs^T v``: 1.3 ms for that attention;
* otherwise (token->image: a few queries over the image grid): PyTorch's fused
  ``scaled_dot_product_attention`` (online softmax, fp32 statistics).

The results are the reference's to float32 rounding (relative error ~1e-7).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F



def token_attention_cpu(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_heads: int,
    key_padding_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """:func:`promptseg.ops.token_attention` on CPU float32 tensors (inputs checked by the caller).

    Args:
        q: (B, Nq, C) projected queries.
        k, v: (B, Nk, C) projected keys and values.
        num_heads: heads; head_dim = C // num_heads.
        key_padding_mask: (B, Nk) bool, True for keys that take part, or None.
    Returns:
        (B, Nq, C) attention output before the output projection.
    """
    batch, n_queries, channels = q.shape
    n_keys = k.shape[1]
    head_dim = channels // num_heads
    q_heads = q.reshape(batch, n_queries, num_heads, head_dim).transpose(1, 2)
    k_heads = k.reshape(batch, n_keys, num_heads, head_dim).transpose(1, 2)
    v_heads = v.reshape(batch, n_keys, num_heads, head_dim).transpose(1, 2)
    if n_keys < n_queries:
        logits = torch.matmul(k_heads, q_heads.transpose(-2, -1))  # (B, heads, Nk, Nq)
        logits.div_(math.sqrt(head_dim))
        if key_padding_mask is not None:
            logits.masked_fill_(~key_padding_mask[:, None, :, None], float("-inf"))
        probs = torch.softmax(logits, dim=-2)
        out = torch.matmul(probs.transpose(-2, -1), v_heads)  # (B, heads, Nq, head_dim)
    else:
        mask = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q_heads, k_heads, v_heads, attn_mask=mask)
    return out.transpose(1, 2).reshape(batch, n_queries, channels)
