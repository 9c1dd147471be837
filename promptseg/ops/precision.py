"""Accumulation dtypes of the reference ops."""

from __future__ import annotations

import torch


def statistics_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of softmax and normalisation statistics: at least float32 (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)
