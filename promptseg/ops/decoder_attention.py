"""Multi-head attention of the mask decoder's two-way transformer (after the q/k/v projections).

:func:`token_attention` is the op the model calls; :func:`gathered_token_attention` is its variant
in which P prompts read shared query or key/value rows through an index (one row per image)
instead of P copies. Both run ``torch.ops.promptseg`` kernels (``csrc/decoder_attention.cu``) on
CUDA bf16/fp16 tensors with a head_dim the kernel is compiled for (csrc/kernel_limits.h, read through
:func:`promptseg.ops.dispatch.kernel_limits`), and their PyTorch references otherwise.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from promptseg.ops.cpu_token_attention import token_attention_cpu
from promptseg.ops.dispatch import kernel_for, kernel_limits
from promptseg.ops.eager import cpu_float32_eager
from promptseg.ops.fakes import register_fake_if_built
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
        backend: see :data:`promptseg.ops.BACKENDS`.
    Returns:
        (B, Nq, C) attention output before the output projection.
    """
    kernel = kernel_for("token_attention", q, k, v, backend=backend)
    if kernel is not None and _kernel_supports(q, k, num_heads):
        _check_inputs(q, k, v, num_heads, key_padding_mask)
        return kernel(_kernel_rows(q), _kernel_rows(k), _kernel_rows(v), num_heads, key_padding_mask)
    return _token_attention_fallback(q, k, v, num_heads, key_padding_mask, backend)


def gathered_token_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_heads: int,
    key_padding_mask: Optional[torch.Tensor] = None,
    q_index: Optional[torch.Tensor] = None,
    kv_index: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """:func:`token_attention` of P prompts whose queries or keys/values are rows of shared tensors.

    Output batch ``b`` attends with ``q[q_index[b]]`` to ``k[kv_index[b]]``, ``v[kv_index[b]]``;
    an index left None is the identity. The kernel reads the shared rows in place, so e.g. the
    image-side tensors of one image serve all of its prompts without P copies.

    Args:
        q: (Bq, Nq, C) projected queries.
        k, v: (Bk, Nk, C) projected keys and values.
        num_heads: number of heads; head_dim = C // num_heads.
        key_padding_mask: (P, Nk) bool, True for keys that take part, or None.
        q_index: (P,) int64 rows of ``q``, or None when Bq == P.
        kv_index: (P,) int64 rows of ``k`` and ``v``, or None when Bk == P. Indices must be in
            range; the kernel does not check them on the host (that would synchronise), an
            out-of-range index trips a device-side assert.
        backend: see :data:`promptseg.ops.BACKENDS`.
    Returns:
        (P, Nq, C) attention output before the output projection.
    """
    _check_indices(q, k, q_index, kv_index)
    kernel = kernel_for("gathered_token_attention", q, k, v, backend=backend)
    if kernel is not None and _kernel_supports(q, k, num_heads):
        batch = _gathered_batch(q, k, q_index, kv_index)
        _check_inputs(_batch_view(q, batch), _batch_view(k, batch), _batch_view(v, batch), num_heads, key_padding_mask)
        return kernel(_kernel_rows(q), _kernel_rows(k), _kernel_rows(v), num_heads, key_padding_mask, q_index, kv_index)
    return _token_attention_fallback(*_gathered_rows(q, k, v, q_index, kv_index), num_heads, key_padding_mask, backend)


def _token_attention_fallback(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_heads: int,
    key_padding_mask: Optional[torch.Tensor],
    backend: str,
) -> torch.Tensor:
    """Where no kernel runs: on CPU float32 inputs with no gradient wanted, outside a trace and with
    ``backend`` not ``"reference"``, :func:`promptseg.ops.cpu_token_attention.token_attention_cpu`
    (the same arithmetic in the layouts a CPU runs fast); otherwise :func:`token_attention_reference`."""
    if backend != "reference" and cpu_float32_eager(q, k, v):
        _check_inputs(q, k, v, num_heads, key_padding_mask)
        return token_attention_cpu(q, k, v, num_heads, key_padding_mask)
    return token_attention_reference(q, k, v, num_heads, key_padding_mask)


def gathered_token_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_heads: int,
    key_padding_mask: Optional[torch.Tensor] = None,
    q_index: Optional[torch.Tensor] = None,
    kv_index: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Pure-PyTorch :func:`gathered_token_attention`: gathers the rows, then :func:`token_attention_reference`."""
    _check_indices(q, k, q_index, kv_index)
    return token_attention_reference(*_gathered_rows(q, k, v, q_index, kv_index), num_heads, key_padding_mask)


def _gathered_rows(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_index: Optional[torch.Tensor], kv_index: Optional[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q, k, v) with the rows of each prompt gathered: (P, Nq, C), (P, Nk, C), (P, Nk, C)."""
    q = q if q_index is None else take_rows(q, q_index)
    if kv_index is not None:
        k, v = take_rows(k, kv_index), take_rows(v, kv_index)
    return q, k, v


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]``; a one-row CPU ``x`` read by every prompt (all of ``index`` 0) is expanded, not copied."""
    if x.shape[0] == 1 and index.device.type == "cpu" and bool((index == 0).all()):
        return x.expand(index.shape[0], *x.shape[1:])
    return x[index]


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
    check_key_padding_mask(key_padding_mask, k)


def check_key_padding_mask(key_padding_mask: Optional[torch.Tensor], k: torch.Tensor) -> None:
    """A key padding mask is None or a (B, Nk) bool tensor for (B, Nk, C) keys ``k``."""
    if key_padding_mask is not None and (
        key_padding_mask.dtype != torch.bool or key_padding_mask.shape != k.shape[:2]
    ):
        raise ValueError(
            f"key_padding_mask must be a bool tensor of shape {tuple(k.shape[:2])}, "
            f"got {key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
        )


def _check_indices(
    q: torch.Tensor, k: torch.Tensor, q_index: Optional[torch.Tensor], kv_index: Optional[torch.Tensor]
) -> None:
    """Shapes and dtypes of the row indices of :func:`gathered_token_attention` (not their values)."""
    for name, index in (("q_index", q_index), ("kv_index", kv_index)):
        if index is not None and (index.dim() != 1 or index.dtype != torch.int64):
            raise ValueError(f"{name} must be a (P,) int64 tensor, got {index.dtype} {tuple(index.shape)}")
    if q_index is not None and kv_index is not None and q_index.shape != kv_index.shape:
        raise ValueError(f"q_index and kv_index must have one length, got {tuple(q_index.shape)} and {tuple(kv_index.shape)}")
    batch = _gathered_batch(q, k, q_index, kv_index)
    if q_index is None and q.shape[0] != batch:
        raise ValueError(f"q must have {batch} batches (one per prompt) when q_index is None, got {tuple(q.shape)}")
    if kv_index is None and k.shape[0] != batch:
        raise ValueError(f"k and v must have {batch} batches (one per prompt) when kv_index is None, got {tuple(k.shape)}")


def _gathered_batch(
    q: torch.Tensor, k: torch.Tensor, q_index: Optional[torch.Tensor], kv_index: Optional[torch.Tensor]
) -> int:
    """Number of prompts P of a gathered attention."""
    if q_index is not None:
        return q_index.shape[0]
    if kv_index is not None:
        return kv_index.shape[0]
    return q.shape[0]


def _batch_view(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``x`` with its first dim seen as ``batch`` (a stride-0 view), for the shape checks only."""
    return x[:1].expand(batch, *x.shape[1:]) if x.shape[0] != batch and x.shape[0] > 0 else x


def _kernel_supports(q: torch.Tensor, k: torch.Tensor, num_heads: int) -> bool:
    """Shapes the kernel handles: (B, N, C) inputs, a compiled head_dim (the ``head_dims`` of
    :func:`promptseg.ops.dispatch.kernel_limits`), at least one key. Both ops share the kernel and
    its limits; without the extension nothing is handled."""
    if q.dim() != 3 or k.dim() != 3 or num_heads < 1 or q.shape[2] % num_heads != 0:
        return False
    limits = kernel_limits("token_attention")
    return bool(limits) and q.shape[2] // num_heads in limits["head_dims"] and k.shape[1] >= 1


def _kernel_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when its rows suit the kernel (unit channel stride, 16-byte aligned rows), else a contiguous copy."""
    elements = 16 // x.element_size()
    aligned = x.stride(-1) == 1 and x.storage_offset() % elements == 0
    aligned = aligned and all(size == 1 or stride % elements == 0 for size, stride in zip(x.shape[:2], x.stride()[:2]))
    return x if aligned else x.clone(memory_format=torch.contiguous_format)


@register_fake_if_built("token_attention")
def _token_attention_fake(q, k, v, num_heads, key_padding_mask=None):
    """Output of ``torch.ops.promptseg.token_attention``: (B, Nq, C), like q."""
    return q.new_empty(q.shape)


@register_fake_if_built("gathered_token_attention")
def _gathered_fake(q, k, v, num_heads, key_padding_mask=None, q_index=None, kv_index=None):
    """Output of ``torch.ops.promptseg.gathered_token_attention``: (P, Nq, C) in q's dtype."""
    batch = _gathered_batch(q, k, q_index, kv_index)
    return q.new_empty((batch, q.shape[1], q.shape[2]))
