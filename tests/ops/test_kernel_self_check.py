"""Kernels earn their default (issue 23): opt-in until a GPU record verifies them, and checked against
their reference on first use, on the CPU with deliberately wrong fake kernels.

The fakes take the place of ``torch.ops.promptseg.<op>`` through the dispatch's two seams
(``_registered_kernel``, and ``_device_supported`` to let CPU bf16 tensors through), so every line of
the dispatch, the self-check and the op wrappers runs as it would on a GPU.
"""

from __future__ import annotations

import copy
import importlib
import json
import warnings

import numpy as np
import pytest
import torch

import promptseg
from promptseg.ops import (
    KERNELS_ENV,
    KernelCheckWarning,
    decoder_attention,
    dispatch,
    encoder_attention,
    gathered_token_attention,
    kernel_available,
    kernel_checks,
    kernel_policy,
    mask_postprocess,
    record_verifies,
    reset_kernel_checks,
    self_check,
    token_attention,
    token_attention_reference,
    vit_attention,
    vit_attention_reference,
)
from tests._support import TINY, model_pair

POSTPROCESS = importlib.import_module("promptseg.ops.mask_postprocess")  # the module (the package exports the function)


def _wrong(op_name):
    """A kernel that computes the reference, then gets it wrong (by a factor, or by flipping masks)."""
    reference = self_check.reference_of(op_name)

    def kernel(*args):
        out = reference(*args)
        if op_name == "mask_postprocess":
            masks, boxes, areas = out
            return (~masks if masks.dtype == torch.bool else -masks), boxes, areas
        return out * 1.5

    return kernel


@pytest.fixture
def fake_kernels(monkeypatch):
    """Kernels on the CPU: bf16 CPU tensors pass the device rule, every op is "built", its kernel is
    ``kernels[op]`` (default: the reference itself, a right kernel), and every call is counted."""
    reset_kernel_checks()
    kernels, calls = {}, []

    def registered(op_name):
        def kernel(*args):
            calls.append(op_name)
            return kernels.get(op_name, self_check.reference_of(op_name))(*args)

        return kernel

    monkeypatch.setattr(dispatch, "_device_supported", lambda tensor: tensor.dtype in (torch.bfloat16, torch.float16))
    monkeypatch.setattr(dispatch, "op_built", lambda op_name: True)
    monkeypatch.setattr(dispatch, "_registered_kernel", registered)
    monkeypatch.setattr(decoder_attention, "_kernel_supports", lambda q, k, num_heads: True)
    monkeypatch.setattr(encoder_attention, "_kernel_applies", lambda *args: True)
    monkeypatch.setattr(POSTPROCESS, "kernel_limits", lambda op_name: {"max_low_res_width": 1024})
    monkeypatch.setenv(KERNELS_ENV, "1")
    yield kernels, calls
    reset_kernel_checks()


def _qkv(batch=2, tokens=(5, 7), channels=32, dtype=torch.bfloat16):
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(batch, tokens[0], channels, generator=generator).to(dtype)
    k = torch.randn(batch, tokens[1], channels, generator=generator).to(dtype)
    v = torch.randn(batch, tokens[1], channels, generator=generator).to(dtype)
    return q, k, v


def test_a_wrong_kernel_is_disabled_with_one_loud_warning_and_the_reference_runs(fake_kernels):
    """Guards against: a kernel that is wrong on the user's GPU giving wrong masks silently."""
    kernels, calls = fake_kernels
    kernels["token_attention"] = _wrong("token_attention")
    q, k, v = _qkv()
    with pytest.warns(KernelCheckWarning) as caught:
        out = token_attention(q, k, v, 4)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "promptseg::token_attention" in message and "cpu" in message and "relative error" in message
    assert "bfloat16" in message and "reference runs instead" in message
    torch.testing.assert_close(out, token_attention_reference(q, k, v, 4))
    assert calls == ["token_attention"]  # the check's call only
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning: none on later calls
        torch.testing.assert_close(token_attention(q, k, v, 4), token_attention_reference(q, k, v, 4))
    assert calls == ["token_attention"] and not kernel_available("token_attention", q)
    (check,) = kernel_checks()
    assert (check.op, check.device, check.dtype, check.passed) == ("token_attention", "cpu", torch.bfloat16, False)
    assert check.seconds >= 0


def test_a_right_kernel_passes_its_check_once_per_code_path_and_then_runs(fake_kernels):
    """Guards against: checking on every call (a cost paid once), or never running a right kernel."""
    _, calls = fake_kernels
    q, k, v = _qkv()
    mask = torch.tensor([[True] * 7, [True, True] + [False] * 5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            token_attention(q, k, v, 4)
        token_attention(q, k, v, 4, key_padding_mask=mask)
    assert [c.variant for c in kernel_checks()] == [False, True] and all(c.passed for c in kernel_checks())
    assert calls == ["token_attention"] * 6  # two checks, then every real call on the kernel
    assert kernel_available("token_attention", q)


def test_a_kernel_that_raises_fails_its_check(fake_kernels):
    kernels, _ = fake_kernels

    def broken(*args):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    kernels["gathered_token_attention"] = broken
    q, k, v = _qkv(batch=1)
    index = torch.zeros(3, dtype=torch.int64)
    with pytest.warns(KernelCheckWarning, match="no kernel image is available"):
        out = gathered_token_attention(q, k, v, 4, q_index=index, kv_index=index)
    torch.testing.assert_close(out, token_attention_reference(q[index], k[index], v[index], 4))


def test_wrong_mask_postprocessing_falls_back(fake_kernels):
    kernels, _ = fake_kernels
    kernels["mask_postprocess"] = _wrong("mask_postprocess")
    low_res = torch.randn(2, 3, 16, 16).bfloat16()
    with pytest.warns(KernelCheckWarning, match="mask_postprocess.*thresholded differently"):
        out = mask_postprocess(low_res, (64, 48), (30, 20), 64, with_stats=True)
    expected = promptseg.ops.mask_postprocess_reference(low_res, (64, 48), (30, 20), 64, with_stats=True)
    assert torch.equal(out.masks, expected.masks) and torch.equal(out.boxes, expected.boxes)


def test_the_encoder_attention_check_uses_the_real_shapes_and_one_image(fake_kernels):
    kernels, _ = fake_kernels
    seen = []

    def spying(*args):
        seen.append(tuple(args[0].shape))
        return self_check.reference_of("vit_attention")(*args)

    kernels["vit_attention"] = spying
    qkv = torch.randn(3, 9, 11, 3 * 32).bfloat16()
    table = torch.randn(13, 16).bfloat16()
    out = vit_attention(qkv, 2, table, table, 7, None)
    assert seen == [(1, 9, 11, 96), (3, 9, 11, 96)]  # the check's one-image case, then the call
    torch.testing.assert_close(out, vit_attention_reference(qkv, 2, table, table, 7, None))


def test_the_check_leaves_the_random_state_alone(fake_kernels):
    """Guards against: a first call changing what a seeded program draws next."""
    torch.manual_seed(0)
    before = torch.get_rng_state()
    token_attention(*_qkv(), 4)
    assert kernel_checks() and torch.equal(torch.get_rng_state(), before)


def test_a_whole_model_with_wrong_kernels_predicts_the_reference_masks(fake_kernels):
    """Guards against: a wrong kernel anywhere in a prediction reaching the user's masks."""
    kernels, _ = fake_kernels
    for name in dispatch.OP_NAMES:
        kernels[name] = _wrong(name)
    _, model = model_pair(TINY, seed=3)
    model = model.to(torch.bfloat16)
    reference = promptseg.ops.set_backend(copy.deepcopy(model), "reference")
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    prompt = {"point_coords": np.array([[40.0, 30.0]]), "point_labels": np.array([1])}
    expected = promptseg.SamPredictor(reference)
    expected.set_image(image)
    with pytest.warns(KernelCheckWarning) as caught:
        predictor = promptseg.SamPredictor(promptseg.ops.set_backend(model, "kernels"))
        predictor.set_image(image)
        masks, scores, _ = predictor.predict(**prompt)
    failed = {check.op for check in kernel_checks() if not check.passed}
    assert "vit_attention" in failed and "token_attention" in failed and len(caught) == len(failed)
    expected_masks, expected_scores, _ = expected.predict(**prompt)
    np.testing.assert_array_equal(masks, expected_masks)
    np.testing.assert_allclose(scores, expected_scores)


def test_inside_compile_tracing_only_a_checked_kernel_runs(fake_kernels, monkeypatch):
    """A traced graph or a captured CUDA graph cannot check: it uses a kernel only once checked."""
    q, k, v = _qkv()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert dispatch.kernel_for("token_attention", q) is None
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    token_attention(q, k, v, 4)  # checked here, eagerly
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert dispatch.kernel_for("token_attention", q) is not None


# ------------------------------------------------------------------ opt-in until a GPU record
def _record(capability="9.0", failed=0, ok=True, complete=True):
    """The fields of tests/gpu/summarize.py's record that decide."""
    totals = {"passed": 40, "failed": failed, "error": 0, "skipped": 2, "xfailed": 0, "xpassed": 0}
    return {"device": "NVIDIA H100 80GB HBM3", "capability": capability, "ok": ok,
            "tests": {"complete": complete, "totals": totals}, "env": {"gpu": "h100"}}


def test_record_verifies_only_complete_passing_runs():
    assert record_verifies(_record())
    assert not record_verifies(_record(failed=1))
    assert not record_verifies(_record(ok=False))
    assert not record_verifies(_record(complete=False))
    assert not record_verifies({**_record(), "tests": None})
    assert not record_verifies({**_record(), "capability": None})


def test_kernels_are_opt_in_until_a_record_covers_the_compute_capability(tmp_path, monkeypatch):
    """Guards against: kernels that no GPU has run being on by default."""
    monkeypatch.setattr(dispatch, "extension_loaded", lambda: True)
    monkeypatch.setattr(dispatch, "_capability", lambda device: "9.0")
    monkeypatch.setenv(dispatch.RECORDS_ENV, str(tmp_path))
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    monkeypatch.delenv(dispatch.DISABLE_ENV, raising=False)
    cuda = torch.device("cuda", 0)
    policy = kernel_policy(cuda)
    assert not policy.by_default and "opt-in" in policy.reason and "9.0" in policy.reason
    (tmp_path / "gpu_checks_a100.json").write_text(json.dumps(_record(capability="8.0")))
    (tmp_path / "gpu_checks_h100.json").write_text(json.dumps(_record(failed=3)))
    dispatch._verified_in.cache_clear()
    assert not kernel_policy(cuda).by_default  # sm 8.0 verified, sm 9.0's record has failures
    (tmp_path / "gpu_checks_h100.json").write_text(json.dumps(_record()))
    dispatch._verified_in.cache_clear()
    policy = kernel_policy(cuda)
    assert policy.by_default and "gpu_checks_h100.json" in policy.reason
    monkeypatch.setenv(KERNELS_ENV, "0")
    assert not kernel_policy(cuda).by_default
    monkeypatch.setenv(dispatch.DISABLE_ENV, "1")
    assert not kernel_policy(cuda).by_default
    dispatch._verified_in.cache_clear()


def test_auto_needs_the_opt_in_and_kernels_backend_is_one(fake_kernels, monkeypatch):
    q = _qkv()[0]
    monkeypatch.delenv(KERNELS_ENV)
    assert not kernel_available("token_attention", q)  # auto, no record for this device
    assert kernel_available("token_attention", q, backend="kernels")
    monkeypatch.setenv(KERNELS_ENV, "1")
    assert kernel_available("token_attention", q)
    monkeypatch.setenv(dispatch.DISABLE_ENV, "1")
    assert not kernel_available("token_attention", q, backend="kernels")


def test_the_repository_has_no_verifying_record_yet():
    """No GPU has run the kernels: they must be opt-in everywhere (update when a record lands)."""
    assert dict(dispatch._verified_in(str(dispatch.RECORDS_DIR))) == {}
