"""The encoder attention on the CPU, in blocks that stay in cache, with no full-size logits.

:func:`promptseg.ops.vit_attention_reference` materialises the (R, T, T) attention logits, adds the
two rel-pos factors to them (another full pass), takes the softmax (another) and multiplies by v:
on a CPU the logits of a global layer (vit_b: 12 heads x 4096 x 4096 fp32, 805 MB) stream through
memory several times: a third of the official encoder's CPU time (``benchmarks/NOTES.md``, CPU). Here the same
arithmetic runs one block at a time (``vit_attention_reference`` partitions the windows and calls
:func:`grid_attention_cpu` on CPU float32 inputs):

* global layers (a grid's bias larger than :data:`BIAS_BLOCK_ELEMENTS`): for a block of query rows,
  the bias ``rel_h[y, x, ky] + rel_w[y, x, kx]`` is written into a reused buffer, the scaled
  ``q k^T`` is added to it by one GEMM (``baddbmm_``), the softmax runs in place (fp32) and one GEMM
  multiplies by v;
* windowed layers (small grids): PyTorch's fused ``scaled_dot_product_attention`` (online softmax,
  fp32 statistics) on a few windows at a time, their bias as its ``attn_mask``.

The results are the reference's to float32 rounding (relative error ~1e-7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptseg.ops.rel_pos import rel_pos_logits

BIAS_BLOCK_ELEMENTS = 1 << 22
"""Elements of the rel-pos bias per fused-attention block (16 MiB of fp32): a block of whole small
grids (windows) stays in a CPU's last-level cache between being written and being read."""
GLOBAL_QUERY_ROWS = 256
"""Query rows per block of a large grid (a global layer); chosen from an unrecorded measurement (see
benchmarks/NOTES.md, CPU), to be checked by benchmarks/cpu.py. The reused logits buffer is (heads, 256, T): 50 MB for vit_b,
where the reference holds 805 MB of logits and writes them five times."""


def cpu_attention_applies(qkv: torch.Tensor, *tensors: torch.Tensor | None) -> bool:
    """Whether :func:`grid_attention_cpu` runs these inputs: float32 tensors on the CPU, and no
    gradient wanted (training keeps the reference, whose backward is the official one)."""
    given = [tensor for tensor in (qkv, *tensors) if tensor is not None]
    if any(tensor.device.type != "cpu" or tensor.dtype != torch.float32 for tensor in given):
        return False
    return not (torch.is_grad_enabled() and any(tensor.requires_grad for tensor in given))


def grid_attention_cpu(
    qkv: torch.Tensor, num_heads: int, rel_pos_h: torch.Tensor | None, rel_pos_w: torch.Tensor | None
) -> torch.Tensor:
    """Attention inside each (h, w) grid of a (N, h, w, 3C) tensor -> (N, h, w, C): a whole grid (a
    global layer) or its windows (``promptseg.ops.vit_attention_reference`` partitions them).

    Args:
        qkv: (N, h, w, 3C) float32 on the CPU, channels [q | k | v], each (num_heads, head_dim).
        rel_pos_h, rel_pos_w: (2h-1, head_dim) and (2w-1, head_dim) tables, or both None.
    """
    grids, height, width, channels3 = (int(size) for size in qkv.shape)
    head_dim = channels3 // (3 * num_heads)
    tokens = height * width
    # (N, heads, T, head_dim) strided views of qkv, no copies
    q, k, v = qkv.reshape(grids, tokens, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    out = qkv.new_empty(grids, tokens, num_heads, head_dim)
    by_head = out.permute(0, 2, 1, 3)  # (N, heads, T, head_dim) view of the output
    if rel_pos_h is None or rel_pos_w is None:
        by_head.copy_(F.scaled_dot_product_attention(q, k, v))
    else:
        rel_h, rel_w = rel_pos_logits(q.reshape(-1, tokens, head_dim), rel_pos_h, rel_pos_w, (height, width))
        rel_h = rel_h.reshape(grids, num_heads, tokens, height, 1)
        rel_w = rel_w.reshape(grids, num_heads, tokens, 1, width)
        attend = _attend_rows if num_heads * tokens * tokens > BIAS_BLOCK_ELEMENTS else _attend_grids
        attend(q, k, v, rel_h, rel_w, by_head)
    return out.view(grids, height, width, num_heads * head_dim)


def _attend_grids(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, out: torch.Tensor
) -> None:
    """Fused attention on blocks of whole grids, written into ``out``.

    Args:
        q, k, v: (N, heads, T, head_dim).
        rel_h: (N, heads, T, h, 1) and rel_w: (N, heads, T, 1, w), the two bias factors.
        out: (N, heads, T, head_dim), written.
    """
    grids, heads, tokens, _ = q.shape
    step = max(1, BIAS_BLOCK_ELEMENTS // (heads * tokens * tokens))
    for first in range(0, grids, step):
        block = slice(first, first + step)
        bias = (rel_h[block] + rel_w[block]).flatten(-2)
        out[block] = F.scaled_dot_product_attention(q[block], k[block], v[block], attn_mask=bias)


def _attend_rows(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor, out: torch.Tensor
) -> None:
    """Attention in blocks of :data:`GLOBAL_QUERY_ROWS` query rows per grid, through one logits
    buffer: bias, then ``+= scale * q k^T`` (GEMM), softmax in place, then ``@ v`` (GEMM).
    Arguments as :func:`_attend_grids`."""
    grids, heads, tokens, head_dim = q.shape
    height, width = rel_h.shape[-2], rel_w.shape[-1]
    rows = min(GLOBAL_QUERY_ROWS, tokens)
    buffer = q.new_empty(heads * rows * tokens)
    scale = head_dim**-0.5
    for grid in range(grids):
        keys_t = k[grid].transpose(1, 2)  # (heads, head_dim, T)
        for first in range(0, tokens, rows):
            block = slice(first, first + rows)
            count = min(rows, tokens - first)
            scores = buffer[: heads * count * tokens].view(heads, count, tokens)  # contiguous, as softmax's out must be
            torch.add(rel_h[grid, :, block], rel_w[grid, :, block], out=scores.view(heads, count, height, width))
            scores.baddbmm_(q[grid, :, block], keys_t, alpha=scale)
            # Softmax in place: the CPU kernel reads each element of a row before it overwrites it.
            torch.ops.aten._softmax.out(scores, -1, False, out=scores)
            out[grid, :, block] = torch.bmm(scores, v[grid])
