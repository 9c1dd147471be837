"""The reference ops against direct float64 formulas and the official modules; dispatch rules."""

from __future__ import annotations

import math

import pytest
import torch

from promptseg.modeling.image_encoder import Block
from promptseg.ops import (
    encoder_attention,  # the module, for monkeypatching its chunk size
    kernel_available,
    layer_norm_fp32,
    rel_pos_table,
    token_attention,
    vit_attention,
)
from tests._support import OFFICIAL_MISSING, randomize_, relative_error

official_encoder = pytest.importorskip("segment_anything.modeling.image_encoder", reason=OFFICIAL_MISSING)


def _direct_attention(q, k, v, bias):
    """softmax(q k^T * scale + bias) v in float64; q, k, v (N, d), bias (N, N)."""
    logits = (q @ k.T) / math.sqrt(q.shape[-1]) + bias
    return torch.softmax(logits, dim=-1) @ v


def _direct_rel_pos_bias(q, rel_pos_h, rel_pos_w, height, width):
    """bias[i, j] = q_i . Rh[y_i, y_j] + q_i . Rw[x_i, x_j] for a row-major (height, width) grid."""
    table_h = rel_pos_table(height, height, rel_pos_h)
    table_w = rel_pos_table(width, width, rel_pos_w)
    ys = torch.arange(height).repeat_interleave(width)
    xs = torch.arange(width).repeat(height)
    bias_h = torch.einsum("ic,ijc->ij", q, table_h[ys][:, ys])
    bias_w = torch.einsum("ic,ijc->ij", q, table_w[xs][:, xs])
    return bias_h + bias_w


@pytest.mark.parametrize("height, width, heads, head_dim", [(37, 53, 2, 16), (8, 8, 3, 8), (1, 5, 1, 4)])
def test_global_vit_attention_equals_direct_formula(height, width, heads, head_dim):
    generator = torch.Generator().manual_seed(height * width)
    channels = heads * head_dim
    qkv = torch.randn(2, height, width, 3 * channels, generator=generator, dtype=torch.float64)
    rel_h = torch.randn(2 * height - 1, head_dim, generator=generator, dtype=torch.float64)
    rel_w = torch.randn(2 * width - 1, head_dim, generator=generator, dtype=torch.float64)
    out = vit_attention(qkv, heads, rel_h, rel_w, window_size=0, qkv_bias=None)
    assert out.shape == (2, height, width, channels)
    tokens = qkv.reshape(2, height * width, 3, heads, head_dim)
    for batch in range(2):
        for head in range(heads):
            q, k, v = (tokens[batch, :, i, head] for i in range(3))
            expected = _direct_attention(q, k, v, _direct_rel_pos_bias(q, rel_h, rel_w, height, width))
            actual = out[batch].reshape(height * width, heads, head_dim)[:, head]
            assert relative_error(actual, expected) < 1e-12


@pytest.mark.parametrize("height, width, window", [(20, 23, 7), (14, 14, 14), (64, 64, 14), (5, 3, 4)])
def test_block_matches_official_with_window_padding(height, width, window):
    """Windowed blocks on grids that need padding behave as the official partition/pad/unpartition."""
    torch.manual_seed(height + width)
    dim, heads = 48, 3
    official = official_encoder.Block(dim, heads, use_rel_pos=True, window_size=window, input_size=(height, width))
    randomize_(official)
    ours = Block(dim, heads, use_rel_pos=True, window_size=window, input_size=(height, width))
    ours.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(2, height, width, dim)
    with torch.no_grad():
        assert relative_error(ours(x), official(x)) < 1e-5


def test_rel_pos_tables_are_interpolated_like_official():
    """An encoder run at another input size resizes the tables as the official get_rel_pos does."""
    torch.manual_seed(0)
    table = torch.randn(27, 8)
    for q_size, k_size in ((14, 14), (20, 20), (7, 7), (9, 13)):
        expected = official_encoder.get_rel_pos(q_size, k_size, table)
        assert torch.allclose(rel_pos_table(q_size, k_size, table), expected)


def test_vit_attention_chunking_does_not_change_results(monkeypatch):
    generator = torch.Generator().manual_seed(1)
    qkv = torch.randn(3, 9, 11, 3 * 16, generator=generator)
    rel_h, rel_w = torch.randn(17, 8, generator=generator), torch.randn(21, 8, generator=generator)
    whole = vit_attention(qkv, 2, rel_h, rel_w, 0, None)
    monkeypatch.setattr(encoder_attention, "_MAX_CHUNK_ELEMENTS", 99 * 99 * 2)
    assert torch.allclose(vit_attention(qkv, 2, rel_h, rel_w, 0, None), whole, atol=1e-6)


def test_token_attention_padding_equals_dropping_keys():
    generator = torch.Generator().manual_seed(2)
    q = torch.randn(3, 5, 32, generator=generator, dtype=torch.float64)
    k = torch.randn(3, 9, 32, generator=generator, dtype=torch.float64)
    v = torch.randn(3, 9, 32, generator=generator, dtype=torch.float64)
    lengths = [9, 4, 1]
    mask = torch.arange(9)[None, :] < torch.tensor(lengths)[:, None]
    padded = token_attention(q, k, v, 4, key_padding_mask=mask)
    for index, length in enumerate(lengths):
        alone = token_attention(q[index : index + 1], k[index : index + 1, :length], v[index : index + 1, :length], 4)
        assert relative_error(padded[index], alone[0]) < 1e-12


def test_token_attention_equals_direct_formula():
    generator = torch.Generator().manual_seed(3)
    q = torch.randn(2, 7, 24, generator=generator, dtype=torch.float64)
    k = torch.randn(2, 13, 24, generator=generator, dtype=torch.float64)
    v = torch.randn(2, 13, 24, generator=generator, dtype=torch.float64)
    out = token_attention(q, k, v, 3)
    for batch in range(2):
        for head in range(3):
            cols = slice(8 * head, 8 * head + 8)
            expected = _direct_attention(q[batch, :, cols], k[batch, :, cols], v[batch, :, cols], 0.0)
            assert relative_error(out[batch, :, cols], expected) < 1e-12


def test_op_input_checks():
    with pytest.raises(ValueError, match=r"qkv of shape \(B, H, W, 3\*C\)"):
        vit_attention(torch.zeros(1, 4, 4, 10), 2, None, None, 0, None)
    with pytest.raises(ValueError, match="rel_pos_h must be"):
        vit_attention(torch.zeros(1, 4, 4, 24), 2, torch.zeros(7, 5), torch.zeros(7, 4), 0, None)
    with pytest.raises(ValueError, match="key_padding_mask must be a bool tensor of shape"):
        token_attention(torch.zeros(1, 2, 8), torch.zeros(1, 3, 8), torch.zeros(1, 3, 8), 2, torch.ones(1, 2, dtype=torch.bool))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_layer_norm_statistics_in_fp32(dtype):
    # Large offsets overflow or lose the variance in half precision; fp32 statistics keep it.
    x = (torch.randn(4, 256) * 3 + 1000).to(dtype)
    out = layer_norm_fp32(x, (256,), torch.ones(256, dtype=dtype), torch.zeros(256, dtype=dtype), 1e-6)
    assert out.dtype == dtype
    expected = torch.nn.functional.layer_norm(x.double(), (256,), eps=1e-6)
    assert relative_error(out, expected) < 1e-2


def test_kernels_are_never_chosen_for_cpu_or_fp32(monkeypatch):
    x = torch.zeros(2, 2)
    assert not kernel_available("vit_attention", x)
    monkeypatch.setenv("PROMPTSEG_DISABLE_KERNELS", "1")
    assert not kernel_available("vit_attention", x.bfloat16())


def test_backend_reference_is_set_on_every_attention_module():
    import promptseg
    from tests._support import TINY
    from promptseg.build import construct_sam

    with torch.device("meta"):
        model = promptseg.build_sam("vit_b", backend="reference")
    backends = {m.backend for m in model.modules() if hasattr(m, "backend")}
    assert backends == {"reference"}
    assert len([m for m in model.modules() if hasattr(m, "backend")]) == 12 + 2 * 3 + 1
    with pytest.raises(ValueError, match=r"backend must be one of \['auto', 'reference', 'kernels'\], got 'fast'"):
        promptseg.build_sam("vit_b", backend="fast")
    assert {m.backend for m in construct_sam(TINY).modules() if hasattr(m, "backend")} == {"auto"}
