"""The decoder's attentions with their projections (promptseg.ops.projected_attention): the folded CPU
form (promptseg.ops.cpu_folded_attention) against the projections-then-attention composition in
float64, both directions, padded tokens, shared query rows, and where the folding is (not) taken."""

from __future__ import annotations

import importlib

import pytest
import torch

from promptseg.modeling.transformer import Attention
from promptseg.ops import (
    Projections,
    cpu_folded_attention,
    gathered_attention_output,
    projected_attention,
    token_attention,
)
from tests._support import relative_error


def attention(channels: int, heads: int, downsample: int, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    module = Attention(channels, heads, downsample_rate=downsample).eval()
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=channels**-0.5)
    return module


def projections(module: Attention) -> Projections:
    return Projections(module.q_proj, module.k_proj, module.v_proj, module.out_proj)


def composition(module: Attention, q, k, v, mask=None):
    """out_proj(token_attention(q_proj q, k_proj k, v_proj v)) in float64, the reference attention."""
    double = Attention(module.embedding_dim, module.num_heads, module.embedding_dim // module.internal_dim).double()
    double.load_state_dict(module.state_dict())
    projected = [proj(x.double()) for proj, x in zip((double.q_proj, double.k_proj, double.v_proj), (q, k, v))]
    return double.out_proj(token_attention(*projected, module.num_heads, mask, backend="reference"))


# (prompts, image tokens, tokens, channels, heads, downsample): vit_b's cross-attentions, odd counts
SHAPES = [(1, 1024, 7, 256, 8, 2), (3, 100, 7, 64, 4, 1), (2, 37, 3, 32, 2, 2), (1, 50, 1, 64, 8, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_folded_forms_match_the_composition_in_float64(shape):
    prompts, image_tokens, tokens, channels, heads, downsample = shape
    module = attention(channels, heads, downsample)
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(prompts, image_tokens, channels, generator=generator)
    token = torch.randn(prompts, tokens, channels, generator=generator)
    mask = torch.ones(prompts, tokens, dtype=torch.bool)
    if tokens > 1:
        mask[0, -1] = False  # the first prompt pads its last token
    before = image.clone()
    with torch.no_grad():
        to_token = module(image, token, token, key_padding_mask=mask)  # image -> token
        to_image = module(token, image, image)  # token -> image
        expected_to_token = composition(module, image, token, token, mask)
        expected_to_image = composition(module, token, image, image)
    assert to_token.shape == (prompts, image_tokens, channels) and to_image.shape == (prompts, tokens, channels)
    assert relative_error(to_token, expected_to_token) < 2e-6
    assert relative_error(to_image, expected_to_image) < 2e-6
    assert torch.equal(image, before)


def test_shared_query_rows_equal_copies():
    module = attention(64, 4, 2)
    generator = torch.Generator().manual_seed(2)
    queries = module.q_proj(torch.randn(1, 80, 64, generator=generator)).detach()  # one image's hoisted rows
    keys, values = torch.randn(2, 3, 5, 32, generator=generator).unbind(0)
    keys, values = keys.expand(3, -1, -1), values.expand(3, -1, -1)
    mask = torch.tensor([[True] * 5, [True] * 5, [True, True, True, False, False]])
    index = torch.zeros(3, dtype=torch.int64)
    with torch.no_grad():
        shared = gathered_attention_output(queries, keys, values, module.out_proj, 4, mask, q_index=index)
        copies = gathered_attention_output(
            queries.expand(3, -1, -1), keys, values, module.out_proj, 4, mask, backend="reference"
        )
    assert relative_error(shared, copies) < 2e-6
    with torch.no_grad(), pytest.raises(IndexError, match="q_index"):
        gathered_attention_output(queries, keys, values, module.out_proj, 4, mask, q_index=torch.tensor([0, 1, 0]))


def test_folding_is_taken_only_where_it_pays_and_applies(monkeypatch):
    calls = []
    entry = importlib.import_module("promptseg.ops.projected_attention")  # the module, not the function
    for name in ("image_to_token_cpu", "token_to_image_cpu"):
        original = getattr(cpu_folded_attention, name)
        monkeypatch.setattr(
            entry,
            name,
            lambda *args, _original=original, _name=name: calls.append(_name) or _original(*args),
        )
    module = attention(64, 4, 1)
    image, token = torch.randn(1, 90, 64), torch.randn(1, 6, 64)
    with torch.no_grad():
        module(image, token, token)
        module(token, image, image)
        assert calls == ["image_to_token_cpu", "token_to_image_cpu"]
        module(image, torch.randn(1, 40, 64), torch.randn(1, 40, 64))  # 4 heads x 40 tokens > 3/4 of 64: no saving
        projected_attention(image, token, token, projections(module), 4, backend="reference")  # as asked
        module.double()(image.double(), token.double(), token.double())  # float64: the composition
        module.float()
    assert calls == ["image_to_token_cpu", "token_to_image_cpu"]
    out = module(image, token, token)  # gradients wanted (training): the composition, whose backward is official
    assert out.requires_grad and len(calls) == 2


def test_bad_padding_mask_is_refused():
    module = attention(64, 4, 1)
    image, token = torch.randn(2, 30, 64), torch.randn(2, 5, 64)
    with torch.no_grad(), pytest.raises(ValueError, match="key_padding_mask"):
        module(image, token, token, key_padding_mask=torch.ones(2, 4, dtype=torch.bool))
