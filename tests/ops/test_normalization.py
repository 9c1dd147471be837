"""``layer_norm_fp32``: half-precision inputs with float32 statistics."""

from __future__ import annotations

import pytest
import torch

from promptseg.ops import layer_norm_fp32
from tests._support import relative_error


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_layer_norm_statistics_in_fp32(dtype):
    # Large offsets overflow or lose the variance in half precision; fp32 statistics keep it.
    x = (torch.randn(4, 256) * 3 + 1000).to(dtype)
    out = layer_norm_fp32(x, (256,), torch.ones(256, dtype=dtype), torch.zeros(256, dtype=dtype), 1e-6)
    assert out.dtype == dtype
    expected = torch.nn.functional.layer_norm(x.double(), (256,), eps=1e-6)
    assert relative_error(out, expected) < 1e-2
