"""Kernel limits are stated once, in csrc/kernel_limits.h: the extension publishes them
(``promptseg._C.KERNEL_LIMITS``) and the ops decide from them whether a kernel applies."""

from __future__ import annotations

import types

import pytest
import torch

from promptseg.ops import available_kernels, dispatch, encoder_attention, extension_loaded, kernel_limits

needs_extension = pytest.mark.skipif(
    not extension_loaded(), reason="the CUDA extension promptseg._C is not built (setup.py build_ext)"
)


@pytest.fixture
def fresh_limits():
    """Forget the cached limits (and the cached extension) before and after a test that swaps the extension."""
    dispatch.kernel_limits.cache_clear()
    yield
    dispatch.kernel_limits.cache_clear()


@needs_extension
def test_the_extension_states_the_limits_of_every_kernel():
    assert available_kernels()
    for op_name in available_kernels():
        assert kernel_limits(op_name), op_name
    vit = kernel_limits("vit_attention")
    assert set(vit) == {"head_dims", "max_grid_side_sum"} and all(isinstance(d, int) for d in vit["head_dims"])
    assert kernel_limits("token_attention") == kernel_limits("gathered_token_attention")
    with pytest.raises(TypeError):
        vit["head_dims"] = (32,)  # read-only
    # The ops apply the extension's numbers: a head dim and a grid right at the edge of the limits.
    head_dim, side_sum = max(vit["head_dims"]), vit["max_grid_side_sum"]
    shape = (1, side_sum // 2, side_sum - side_sum // 2, 3 * head_dim)
    assert encoder_attention.kernel_supports(shape, 1, 0, True)
    assert not encoder_attention.kernel_supports((1, side_sum // 2, side_sum // 2 + 1, 3 * head_dim), 1, 0, True)
    assert not encoder_attention.kernel_supports((1, 8, 8, 3 * (head_dim + 1)), 1, 0, False)


def test_without_the_extension_no_kernel_applies(monkeypatch, fresh_limits):
    monkeypatch.setattr(dispatch, "_extension", lambda: None)
    assert kernel_limits("vit_attention") == {}
    assert not encoder_attention.kernel_supports((1, 64, 64, 3 * 768), 12, 14, True)


def test_an_extension_built_from_older_sources_is_named(monkeypatch, fresh_limits):
    stale = types.ModuleType("promptseg._C")
    stale.__file__ = "/somewhere/_C.so"
    monkeypatch.setattr(dispatch, "_extension", lambda: stale)
    with pytest.raises(RuntimeError, match=r"promptseg._C \(/somewhere/_C.so\) states no kernel limits .*rebuild"):
        kernel_limits("token_attention")


@needs_extension
def test_fakes_still_describe_the_kernels_outputs():
    q = torch.empty(2, 5, 64, dtype=torch.bfloat16, device="meta")
    assert torch.ops.promptseg.token_attention(q, q, q, 4).shape == (2, 5, 64)
