"""Dispatch between the references and the kernels: the CPU and fp32 never get a kernel, the switch
that turns kernels off, the decoder ops' fall-backs, and the kernel limits, stated once in
csrc/kernel_limits.h: the extension publishes them (``promptseg._C.KERNEL_LIMITS``) and the ops decide
from them whether a kernel applies."""

from __future__ import annotations

import copy
import types

import pytest
import torch

from promptseg.ops import (
    available_kernels,
    decoder_attention,  # the module, to reach its kernel-support rule
    dispatch,
    encoder_attention,
    kernel_available,
    kernel_limits,
    module_backend,
    set_backend,
)
from tests.ops._support import needs_extension


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


def test_kernels_are_never_chosen_for_cpu_or_fp32(monkeypatch):
    x = torch.zeros(2, 2)
    assert not kernel_available("vit_attention", x)
    monkeypatch.setenv("PROMPTSEG_DISABLE_KERNELS", "1")
    assert not kernel_available("vit_attention", x.bfloat16())


def test_dispatch_falls_back(monkeypatch):
    q = torch.randn(2, 3, 32)
    assert not kernel_available("token_attention", q) and not kernel_available("mask_postprocess", q[None])
    # Unsupported head dims, zero keys and wide low-res logits run the reference even where a kernel exists.
    assert not decoder_attention._kernel_supports(q, q, 3) and not decoder_attention._kernel_supports(q, q[:, :0], 2)
    monkeypatch.setenv("PROMPTSEG_DISABLE_KERNELS", "1")
    assert not kernel_available("gathered_token_attention", q.bfloat16())


class _Calls(torch.nn.Module):
    """A module that calls ops: it carries a ``backend``."""

    backend = "auto"


def _tree() -> torch.nn.Module:
    return torch.nn.Sequential(_Calls(), torch.nn.Sequential(torch.nn.ReLU(), _Calls()))


def test_module_backend_reads_the_backends_afresh_each_call():
    model = _tree()
    assert module_backend(model) == "auto"
    set_backend(model, "kernels")
    assert module_backend(model) == "kernels"
    model[1][1].backend = "reference"  # one submodule, set by hand
    assert module_backend(model) == "reference"
    model[1][1].backend = "auto"
    assert module_backend(model) == "auto"


def test_module_backend_sees_submodules_added_or_replaced_after_its_first_call():
    model = _tree()
    assert module_backend(model) == "auto"
    replacement = _Calls()
    replacement.backend = "reference"
    model[1][1] = replacement  # replaced through the module API
    assert module_backend(model) == "reference"
    model[1][1] = torch.nn.ReLU()
    assert module_backend(model) == "auto"
    added = _Calls()
    added.backend = "reference"
    model.add_module("late", added)
    assert module_backend(model) == "reference"
    model.late = torch.nn.Identity()  # attribute assignment registers too
    assert module_backend(model) == "auto"


def test_module_backend_lists_each_model_separately():
    first, second = _tree(), _tree()
    set_backend(second, "reference")
    assert (module_backend(first), module_backend(second)) == ("auto", "reference")
    assert dispatch.op_calling_modules(first) == (first[0], first[1][1])
    assert module_backend(copy.deepcopy(second)) == "reference"
