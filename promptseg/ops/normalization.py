"""Layer normalisation whose statistics are always computed in (at least) float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from promptseg.ops.precision import statistics_dtype


def layer_norm_fp32(
    x: torch.Tensor,
    normalized_shape: tuple[int, ...],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """LayerNorm over the trailing ``normalized_shape`` dims with fp32 statistics.

    Args:
        x: (..., *normalized_shape) in any floating dtype.
        weight, bias: (*normalized_shape) affine parameters, or None.
    Returns:
        Same shape and dtype as ``x``. Mean and variance are fp32 even for
        bf16/fp16 inputs, which keeps half-precision encoders from overflowing.
    """
    dtype = statistics_dtype(x.dtype)
    weight = weight.to(dtype) if weight is not None else None
    bias = bias.to(dtype) if bias is not None else None
    return F.layer_norm(x.to(dtype), normalized_shape, weight, bias, eps).to(x.dtype)
