"""The encoder attention's CPU path (promptseg.ops.cpu_attention) against the materialised reference
form (``export=True``) and, in a whole encoder, against the official module."""

from __future__ import annotations

import pytest
import torch

from promptseg.ops import cpu_attention, vit_attention_reference
from tests._support import relative_error

# (batch, H, W, heads, head_dim, window): windows with padding, a global grid in one block of
# grids, a global grid in query-row blocks with a partial last block (3 heads x 1200^2 > the bias
# budget: 1200 = 4 x 256 + 176), and windows that divide the grid.
SHAPES = [(2, 16, 16, 2, 32, 7), (1, 20, 13, 3, 16, 0), (1, 40, 30, 3, 8, 0), (2, 12, 12, 2, 8, 4)]


def inputs(batch, height, width, heads, head_dim, window, seed=0):
    generator = torch.Generator().manual_seed(seed)
    side_h, side_w = (window, window) if window else (height, width)
    qkv = torch.randn(batch, height, width, 3 * heads * head_dim, generator=generator)
    rel_h = 0.3 * torch.randn(2 * side_h - 1, head_dim, generator=generator)
    rel_w = 0.3 * torch.randn(2 * side_w - 1, head_dim, generator=generator)
    return qkv, rel_h, rel_w, torch.randn(3 * heads * head_dim, generator=generator)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rel_pos", [True, False])
def test_cpu_path_matches_the_materialised_reference(shape, rel_pos):
    qkv, rel_h, rel_w, bias = inputs(*shape)
    heads, window = shape[3], shape[5]
    tables = (rel_h, rel_w) if rel_pos else (None, None)
    with torch.no_grad():
        expected = vit_attention_reference(qkv, heads, *tables, window, bias, export=True)
        actual = vit_attention_reference(qkv, heads, *tables, window, bias)
    assert actual.shape == expected.shape and actual.is_contiguous()
    assert relative_error(actual, expected) < 1e-6


def test_row_blocks_are_taken_for_large_grids(monkeypatch):
    calls = []
    original = cpu_attention._attend_rows
    monkeypatch.setattr(cpu_attention, "_attend_rows", lambda *args: calls.append(1) or original(*args))
    qkv, rel_h, rel_w, bias = inputs(*SHAPES[2])
    with torch.no_grad():
        vit_attention_reference(qkv, 3, rel_h, rel_w, 0, bias)
        assert calls == [1]
        small, small_h, small_w, _ = inputs(*SHAPES[1])  # 3 x 260^2: whole grids in one block
        vit_attention_reference(small, 3, small_h, small_w, 0, None)
    assert calls == [1]


def test_cpu_path_applies_to_cpu_float32_without_gradients():
    qkv, rel_h, rel_w, bias = inputs(*SHAPES[0])
    with torch.no_grad():
        assert cpu_attention.cpu_attention_applies(qkv, rel_h, rel_w, bias)
        assert not cpu_attention.cpu_attention_applies(qkv.double(), rel_h.double(), rel_w.double(), None)
        assert not cpu_attention.cpu_attention_applies(qkv.bfloat16(), None, None, None)
    weights = rel_h.clone().requires_grad_()
    assert not cpu_attention.cpu_attention_applies(qkv, weights, rel_w, bias)
    # Training keeps the reference's own arithmetic and backward.
    out = vit_attention_reference(qkv, 2, weights, rel_w, 7, bias)
    out.sum().backward()
    assert weights.grad is not None and torch.equal(out, vit_attention_reference(qkv, 2, weights, rel_w, 7, bias, export=True))


# vit_tiny as bundled (windows of 8 on a 32x32 grid: one block of windows; global 3 x 1024^2 tokens:
# one block), and vit_b at 416 px (a 26x26 grid: windows of 14 with padding; global 12 x 676^2 > the
# bias budget: query-row blocks, the last one partial).
ENCODER_CASES = [("vit_tiny", {}), ("vit_b", {"image_size": 416})]


@pytest.mark.parametrize("name, changes", ENCODER_CASES, ids=[name for name, _ in ENCODER_CASES])
def test_the_encoder_on_the_cpu_path_matches_the_official_one(name, changes, monkeypatch):
    """fp32 parity (<= 1e-4 relative, the project's bar) of the whole image encoder against the official
    module, with the CPU path counted as taken in every attention layer."""
    import dataclasses

    from promptseg.configs import CONFIGS
    from promptseg.ops import encoder_attention
    from tests._support import model_pair

    config = dataclasses.replace(CONFIGS[name], **changes)
    official, ours = model_pair(config, seed=3)
    calls = []
    original = encoder_attention.grid_attention_cpu
    monkeypatch.setattr(encoder_attention, "grid_attention_cpu", lambda *args: calls.append(1) or original(*args))
    images = torch.randn(1, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = official.image_encoder(images)
        actual = ours.image_encoder(images)
    assert len(calls) == config.encoder_depth
    assert relative_error(actual, expected) <= 1e-4
