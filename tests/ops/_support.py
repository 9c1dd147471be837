"""Helpers of the op tests: a direct float64 attention formula and the extension's skip marker."""

from __future__ import annotations

import math

import pytest
import torch

from promptseg.ops import extension_loaded

needs_extension = pytest.mark.skipif(
    not extension_loaded(), reason="the CUDA extension promptseg._C is not built (setup.py build_ext)"
)


def direct_attention(q, k, v, bias):
    """softmax(q k^T * scale + bias) v in float64; q, k, v (N, d), bias (N, N)."""
    logits = (q @ k.T) / math.sqrt(q.shape[-1]) + bias
    return torch.softmax(logits, dim=-1) @ v
