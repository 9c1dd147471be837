"""Multi-head self-attention of the ViT image encoder, with the decomposed relative position bias.

``vit_attention`` is the single entry point used by the image encoder for both
its windowed and its global layers. It runs the fused CUDA kernel
``torch.ops.promptseg.vit_attention`` (csrc/encoder_attention.cu) where
:func:`kernel_supports` says it applies, and :func:`vit_attention_reference`
everywhere else (on CPU float32 inputs the reference computes in cache-sized blocks,
:mod:`promptseg.ops.cpu_attention`); ``vit_attention_reference(..., export=True)`` is the form
that ``torch.onnx.export`` traces into an ONNX graph (promptseg.export).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch

from promptseg.ops.cpu_attention import cpu_attention_applies, grid_attention_cpu
from promptseg.ops.dispatch import kernel_for, kernel_limits
from promptseg.ops.fakes import register_fake_if_built
from promptseg.ops.precision import statistics_dtype
from promptseg.ops.rel_pos import rel_pos_logits
from promptseg.ops.windows import partition_windows, unpartition_windows

# Attention probabilities of one chunk stay below this many elements (1 GiB of fp32).
_MAX_CHUNK_ELEMENTS = 1 << 28


class _AttentionInputs(NamedTuple):
    """The arguments of :func:`vit_attention` and of its kernel, in the kernel's order (shapes in
    :func:`vit_attention`'s docstring); the helpers below take them positionally."""

    qkv: torch.Tensor
    num_heads: int
    rel_pos_h: Optional[torch.Tensor]
    rel_pos_w: Optional[torch.Tensor]
    window_size: int
    qkv_bias: Optional[torch.Tensor]


def vit_attention(
    qkv: torch.Tensor,
    num_heads: int,
    rel_pos_h: torch.Tensor | None,
    rel_pos_w: torch.Tensor | None,
    window_size: int,
    qkv_bias: torch.Tensor | None,
    backend: str = "auto",
) -> torch.Tensor:
    """Self-attention over a token grid, windowed (window_size > 0) or global.

    Computes ``softmax(scale * q k^T + rel_h + rel_w) v`` per head, where the
    bias is the decomposed relative position term of SAM's encoder.

    Args:
        qkv: (B, H, W, 3*C) output of the qkv projection of the un-partitioned
            grid; channels are ordered [q | k | v], each (num_heads, head_dim).
        num_heads: number of heads; head_dim = C // num_heads.
        rel_pos_h, rel_pos_w: (2*S-1, head_dim) tables, S the attended grid side,
            or both None to disable the bias.
        window_size: side of the square windows; 0 for global attention.
        qkv_bias: (3*C,) bias of the qkv projection, or None. Windowed layers
            pad the grid to a multiple of the window; padded tokens are the
            projection of a zero vector, i.e. this bias (zeros when None).
        backend: see :data:`promptseg.ops.BACKENDS`.
    Returns:
        (B, H, W, C) attention output before the output projection.
    """
    inputs = _AttentionInputs(qkv, num_heads, rel_pos_h, rel_pos_w, window_size, qkv_bias)
    _check_inputs(*inputs)
    kernel = kernel_for("vit_attention", qkv, backend=backend)
    if kernel is not None and _kernel_applies(*inputs):
        return kernel(*inputs)
    return vit_attention_reference(*inputs)


def kernel_supports(qkv_shape: tuple[int, ...], num_heads: int, window_size: int, has_rel_pos: bool) -> bool:
    """Whether the CUDA kernel handles this shape, by the limits the extension states
    (:func:`promptseg.ops.dispatch.kernel_limits`; csrc/kernel_limits.h): a compiled head_dim
    (``head_dims``) and, with a rel-pos bias, an attended grid (the window, or the whole (H, W)
    grid) with h + w <= ``max_grid_side_sum`` (the per-query rel-pos logits live in shared
    memory). False without the extension.

    Args:
        qkv_shape: (B, H, W, 3*C) shape of the qkv input.
        num_heads: number of heads; head_dim = C // num_heads.
        window_size: window side, 0 for global attention.
        has_rel_pos: whether rel_pos_h / rel_pos_w are given.
    """
    limits = kernel_limits("vit_attention")
    _, height, width, channels3 = qkv_shape
    if not limits or channels3 // (3 * num_heads) not in limits["head_dims"]:
        return False
    grid_h, grid_w = (window_size, window_size) if window_size > 0 else (height, width)
    return not has_rel_pos or grid_h + grid_w <= limits["max_grid_side_sum"]


def _kernel_applies(*args: Any) -> bool:
    """For :class:`_AttentionInputs` given positionally, the conditions on top of :func:`promptseg.ops.dispatch.kernel_for` (which has checked that
    qkv is a bf16/fp16 CUDA tensor): a supported shape, a contiguous qkv, the other tensors on
    qkv's device, a GPU of compute capability 8.0+, and no gradient wanted (the kernel has no
    backward, so training runs the reference)."""
    qkv, num_heads, rel_pos_h, rel_pos_w, window_size, qkv_bias = _AttentionInputs(*args)
    if not kernel_supports(tuple(qkv.shape), num_heads, window_size, rel_pos_h is not None) or not qkv.is_contiguous():
        return False
    others = [tensor for tensor in (rel_pos_h, rel_pos_w, qkv_bias) if tensor is not None]
    if any(tensor.device != qkv.device or not tensor.is_floating_point() for tensor in others):
        return False
    if torch.is_grad_enabled() and any(tensor.requires_grad for tensor in (qkv, *others)):
        return False
    return torch.cuda.get_device_capability(qkv.device) >= (8, 0)


def vit_attention_reference(
    qkv: torch.Tensor,
    num_heads: int,
    rel_pos_h: torch.Tensor | None,
    rel_pos_w: torch.Tensor | None,
    window_size: int,
    qkv_bias: torch.Tensor | None,
    export: bool = False,
) -> torch.Tensor:
    """Pure-PyTorch :func:`vit_attention`; softmax statistics in fp32.

    By default the grids are attended in chunks whose attention probabilities stay below 1 GiB of
    fp32. With ``export=True`` it is the form that ``torch.onnx.export`` (TorchScript exporter) traces
    into a graph ONNX Runtime and TensorRT's parser both take, with the same result: all grids in
    one pass (chunks would freeze the batch size into the graph), and the softmax input cast to fp32
    explicitly (the exporter turns ``softmax(x, dtype=float32)`` into ``Cast(Softmax(x))``), so the
    statistics are fp32 in an fp16 or bf16 graph too. Either way every size but the batch is read as
    a Python int (a constant of a traced graph), the window padding is a Pad and the rel-pos bias
    two batched matmuls.

    On CPU float32 inputs with no gradient wanted (and not ``export``), the same arithmetic runs in
    cache-sized blocks that never hold the full logits (:func:`promptseg.ops.cpu_attention.grid_attention_cpu`,
    less memory traffic on a CPU); the results agree to float32 rounding.
    """
    _check_inputs(qkv, num_heads, rel_pos_h, rel_pos_w, window_size, qkv_bias)
    if not export and cpu_attention_applies(qkv, rel_pos_h, rel_pos_w, qkv_bias):
        attend = grid_attention_cpu
    else:
        def attend(grids, heads, table_h, table_w):
            return _grid_attention(grids, heads, table_h, table_w, export)
    if window_size == 0:
        return attend(qkv, num_heads, rel_pos_h, rel_pos_w)
    height, width = (int(size) for size in qkv.shape[1:3])
    windows, padded_hw = partition_windows(qkv, window_size, qkv_bias)
    out = attend(windows, num_heads, rel_pos_h, rel_pos_w)
    return unpartition_windows(out, window_size, padded_hw, (height, width))


def _grid_attention(
    qkv: torch.Tensor,
    num_heads: int,
    rel_pos_h: torch.Tensor | None,
    rel_pos_w: torch.Tensor | None,
    export: bool,
) -> torch.Tensor:
    """Global attention inside each (h, w) grid of a (N, h, w, 3C) tensor; returns (N, h, w, C).

    Chunked over N * heads unless ``export``; every reshape infers only the leading dim.
    """
    height, width, channels3 = (int(size) for size in qkv.shape[1:])
    head_dim = channels3 // (3 * num_heads)
    tokens = height * width
    # (3, N * heads, tokens, head_dim)
    q, k, v = qkv.reshape(-1, tokens, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).reshape(3, -1, tokens, head_dim)
    rows_per_chunk = max(1, _MAX_CHUNK_ELEMENTS // (tokens * tokens))
    if export or rows_per_chunk >= q.shape[0]:
        out = _attend(q, k, v, rel_pos_h, rel_pos_w, (height, width), export)
    else:
        out = torch.empty_like(q)
        for start in range(0, q.shape[0], rows_per_chunk):
            chunk = slice(start, start + rows_per_chunk)
            out[chunk] = _attend(q[chunk], k[chunk], v[chunk], rel_pos_h, rel_pos_w, (height, width), export)
    out = out.view(-1, num_heads, height, width, head_dim).permute(0, 2, 3, 1, 4)
    return out.reshape(-1, height, width, num_heads * head_dim)


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor | None,
    rel_pos_w: torch.Tensor | None,
    grid: tuple[int, int],
    export: bool,
) -> torch.Tensor:
    """``softmax(scale * q k^T + rel_h + rel_w) v`` for q, k, v (R, h*w, head_dim) on an (h, w) grid;
    returns (R, h*w, head_dim). Softmax statistics in (at least) fp32."""
    height, width = grid
    tokens = height * width
    logits = (q * int(q.shape[-1]) ** -0.5) @ k.transpose(-2, -1)
    if rel_pos_h is not None and rel_pos_w is not None:
        rel_h, rel_w = rel_pos_logits(q, rel_pos_h, rel_pos_w, grid)
        logits = logits.view(-1, height, width, height, width) + rel_h[..., :, None] + rel_w[..., None, :]
        logits = logits.view(-1, tokens, tokens)
    statistics = statistics_dtype(logits.dtype)
    if export:  # an explicit cast: the exporter turns softmax(x, dtype=float32) into Cast(Softmax(x))
        probs = torch.softmax(logits.to(statistics), dim=-1)
    else:  # no fp32 copy of the logits
        probs = torch.softmax(logits, dim=-1, dtype=statistics)
    return probs.to(v.dtype) @ v


def _check_inputs(*args: Any) -> None:
    """A ValueError naming the first of :class:`_AttentionInputs` (given positionally) that is malformed."""
    qkv, num_heads, rel_pos_h, rel_pos_w, window_size, qkv_bias = _AttentionInputs(*args)
    if qkv.dim() != 4 or qkv.shape[-1] % (3 * num_heads) != 0:
        raise ValueError(
            f"vit_attention expects qkv of shape (B, H, W, 3*C) with C divisible by num_heads={num_heads}, "
            f"got {tuple(qkv.shape)}"
        )
    if window_size < 0:
        raise ValueError(f"window_size must be >= 0, got {window_size}")
    if (rel_pos_h is None) != (rel_pos_w is None):
        raise ValueError("rel_pos_h and rel_pos_w must both be given or both be None")
    head_dim = qkv.shape[-1] // (3 * num_heads)
    for name, table in (("rel_pos_h", rel_pos_h), ("rel_pos_w", rel_pos_w)):
        if table is not None and (table.dim() != 2 or table.shape[1] != head_dim):
            raise ValueError(f"{name} must be (L, head_dim={head_dim}), got {tuple(table.shape)}")
    if qkv_bias is not None and qkv_bias.shape != (qkv.shape[-1],):
        raise ValueError(f"qkv_bias must be ({qkv.shape[-1]},), got {tuple(qkv_bias.shape)}")


@register_fake_if_built("vit_attention")
def _vit_attention_fake(qkv, num_heads, rel_pos_h, rel_pos_w, window_size, qkv_bias):
    """Output of ``torch.ops.promptseg.vit_attention``: (B, H, W, C) for qkv (B, H, W, 3*C), in qkv's dtype."""
    torch._check(qkv.dim() == 4, lambda: f"vit_attention: expected qkv of shape (B, H, W, 3*C), got {qkv.shape}")
    torch._check(
        qkv.shape[3] % (3 * num_heads) == 0,
        lambda: f"vit_attention: expected the last dim of qkv to be 3 * num_heads * head_dim, got {qkv.shape[3]}",
    )
    return qkv.new_empty((qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3] // 3))
