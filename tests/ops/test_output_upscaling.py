"""The mask decoder's output head on the CPU (promptseg.ops.output_upscaling): the (pixels, channels)
GEMM form against the module path in float64, odd grids, batches of prompts, and where it is (not)
taken; SAM 2's high-res features take the module path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from promptseg.modeling.common import LayerNorm2d
from promptseg.ops import output_upscaling, upscaled_mask_logits, upscaled_mask_logits_reference
from tests._support import relative_error


def upscaling(channels: int, activation: type[nn.Module] = nn.GELU, seed: int = 0) -> nn.Sequential:
    """SAM's output_upscaling for ``channels`` with random weights (the LayerNorm's too)."""
    torch.manual_seed(seed)
    head = nn.Sequential(
        nn.ConvTranspose2d(channels, channels // 4, kernel_size=2, stride=2),
        LayerNorm2d(channels // 4),
        activation(),
        nn.ConvTranspose2d(channels // 4, channels // 8, kernel_size=2, stride=2),
        activation(),
    )
    for parameter in head.parameters():
        nn.init.normal_(parameter, std=0.2)
    return head.eval()


def inputs(prompts, grid, channels, masks, high_res, seed=1):
    generator = torch.Generator().manual_seed(seed)
    height, width = grid
    src = torch.randn(prompts, height * width, channels, generator=generator)
    hyper_in = torch.randn(prompts, masks, channels // 8, generator=generator)
    features = None
    if high_res:  # SAM 2: (feat_s0, feat_s1), batch 1 (shared by the prompts)
        features = (
            torch.randn(1, channels // 8, 4 * height, 4 * width, generator=generator),
            torch.randn(1, channels // 4, 2 * height, 2 * width, generator=generator),
        )
    return src, hyper_in, features


# (prompts, grid, channels, masks, high-res features): vit_b's head, odd and one-row grids, batches
CASES = [(1, (64, 64), 256, 4, False), (3, (5, 7), 64, 4, False), (2, (8, 8), 32, 3, True), (1, (1, 3), 16, 1, True)]


@pytest.mark.parametrize("case", CASES)
def test_cpu_form_matches_the_modules_in_float64(case):
    prompts, grid, channels, masks, high_res = case
    head = upscaling(channels)
    src, hyper_in, features = inputs(prompts, grid, channels, masks, high_res)
    before = src.clone()
    with torch.no_grad():
        actual = upscaled_mask_logits(src, grid, head, hyper_in, features)
        double = [tensor.double() for tensor in (src, hyper_in)]
        high = None if features is None else tuple(tensor.double() for tensor in features)
        expected = upscaled_mask_logits_reference(double[0], grid, head.double(), double[1], high)
        if features is None:  # the CPU form; SAM 2's high-res features keep the module path
            assert torch.equal(actual, output_upscaling.upscaled_mask_logits_cpu(src, grid, head.float(), hyper_in))
    assert actual.shape == (prompts, masks, 4 * grid[0], 4 * grid[1]) and actual.dtype == torch.float32
    assert relative_error(actual, expected) < 1e-6
    assert torch.equal(src, before)


def test_reference_backend_is_the_module_path_bit_for_bit():
    head = upscaling(32)
    src, hyper_in, _ = inputs(2, (4, 6), 32, 4, False)
    with torch.no_grad():
        modules = head(src.transpose(1, 2).reshape(2, 32, 4, 6))
        expected = (hyper_in @ modules.reshape(2, 4, -1)).reshape(2, 4, 16, 24)
        assert torch.equal(upscaled_mask_logits(src, (4, 6), head, hyper_in, backend="reference"), expected)


def test_cpu_form_is_taken_only_where_it_applies(monkeypatch):
    calls = []
    original = output_upscaling.upscaled_mask_logits_cpu
    monkeypatch.setattr(output_upscaling, "upscaled_mask_logits_cpu", lambda *args: calls.append(1) or original(*args))
    head = upscaling(32)
    src, hyper_in, _ = inputs(1, (3, 3), 32, 4, False)
    with torch.no_grad():
        upscaled_mask_logits(src, (3, 3), head, hyper_in)
        assert calls == [1]
        upscaled_mask_logits(src, (3, 3), head, hyper_in, backend="reference")  # as asked
        upscaled_mask_logits(src.double(), (3, 3), head.double(), hyper_in.double())  # float64: the reference
        upscaled_mask_logits(src, (3, 3), upscaling(32, nn.Tanh), hyper_in)  # an activation not listed
        other = upscaling(32)
        other[0] = nn.ConvTranspose2d(32, 8, kernel_size=2, stride=2, padding=0, bias=False)  # no bias
        upscaled_mask_logits(src, (3, 3), other, hyper_in)
    assert calls == [1]
    head.float()
    logits = upscaled_mask_logits(src, (3, 3), head, hyper_in)  # gradients wanted (training): the reference
    assert calls == [1] and logits.requires_grad


def test_relu_and_batched_prompts_take_the_cpu_form():
    head = upscaling(64, nn.ReLU)
    src, hyper_in, _ = inputs(4, (6, 5), 64, 2, False, seed=3)
    with torch.no_grad():
        actual = upscaled_mask_logits(src, (6, 5), head, hyper_in)
        expected = upscaled_mask_logits_reference(src.double(), (6, 5), head.double(), hyper_in.double())
    assert relative_error(actual, expected) < 1e-6
