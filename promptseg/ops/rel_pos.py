"""Decomposed relative position tables of the ViT image encoder (SAM / MViTv2 style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly interpolate a (L, head_dim) table to (length, head_dim); no-op when L == length."""
    if rel_pos.shape[0] == length:
        return rel_pos
    resized = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=length, mode="linear")
    return resized.reshape(-1, length).permute(1, 0)


def rel_pos_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Per (query, key) offset embeddings along one axis.

    Args:
        q_size, k_size: number of query / key positions along the axis.
        rel_pos: (L, head_dim) learned table, resized to 2*max(q_size, k_size)-1 if needed.
    Returns:
        (q_size, k_size, head_dim): entry [i, j] embeds the offset between query i and key j.
    """
    max_rel_dist = 2 * max(q_size, k_size) - 1
    table = resize_rel_pos(rel_pos, max_rel_dist)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    offsets = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[offsets.long()]


def rel_pos_logits(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the decomposed bias for queries on an (h, w) grid attending to the same grid.

    Computed as two batched matmuls over the grid rows / columns, which export to ONNX as MatMul
    (TensorRT's parser takes no einsum with an ellipsis); every reshape infers only one dim.

    Args:
        q: (..., h*w, head_dim) unscaled queries, row-major over the grid.
        rel_pos_h, rel_pos_w: (L, head_dim) tables.
    Returns:
        rel_h: (..., h, w, h) with rel_h[..., y, x, ky] = q[y, x] . Rh[y, ky]
        rel_w: (..., h, w, w) with rel_w[..., y, x, kx] = q[y, x] . Rw[x, kx]
    """
    h, w = (int(size) for size in grid)
    head_dim = int(q.shape[-1])
    table_h = rel_pos_table(h, h, rel_pos_h).to(q.dtype)  # (h, kh, c)
    table_w = rel_pos_table(w, w, rel_pos_w).to(q.dtype)  # (w, kw, c)
    q_grid = q.reshape(-1, h, w, head_dim)  # (N, h, w, c), N the leading dims
    by_row = q_grid.permute(1, 0, 2, 3).reshape(h, -1, head_dim)  # (h, N*w, c)
    rel_h = (by_row @ table_h.transpose(1, 2)).reshape(h, -1, w, h).permute(1, 0, 2, 3)
    by_column = q_grid.permute(2, 0, 1, 3).reshape(w, -1, head_dim)  # (w, N*h, c)
    rel_w = (by_column @ table_w.transpose(1, 2)).reshape(w, -1, h, w).permute(1, 2, 0, 3)
    if q.dim() != 3:  # restore the leading dims (a traced export passes exactly one)
        rel_h, rel_w = rel_h.reshape(*q.shape[:-2], h, w, h), rel_w.reshape(*q.shape[:-2], h, w, w)
    return rel_h, rel_w
