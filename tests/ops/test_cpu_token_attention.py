"""The decoder's token attention on the CPU (promptseg.ops.cpu_token_attention) against the float64
reference: both of its forms (few keys: transposed logits; otherwise PyTorch's fused attention), odd
sizes, padded keys, and where it is (not) taken."""

from __future__ import annotations

import pytest
import torch

from promptseg.ops import cpu_token_attention, gathered_token_attention, token_attention, token_attention_reference
from tests._support import relative_error

# (batch, queries, keys, channels, heads): image->token (few keys, the transposed form) and
# token->image (few queries, fused attention), odd counts, head_dim 8 and 16, one key, one query.
SHAPES = [(2, 1024, 7, 64, 8), (3, 5, 1023, 64, 8), (1, 333, 11, 48, 3), (2, 9, 9, 32, 2), (1, 17, 1, 16, 1), (2, 1, 40, 16, 2)]


def qkv(batch, queries, keys, channels, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, queries, channels, generator=generator),
        torch.randn(batch, keys, channels, generator=generator),
        torch.randn(batch, keys, channels, generator=generator),
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("padded", [False, True])
def test_cpu_token_attention_matches_float64_reference(shape, padded):
    batch, queries, keys, channels, heads = shape
    q, k, v = qkv(batch, queries, keys, channels)
    mask = None
    if padded and keys > 1:
        mask = torch.ones(batch, keys, dtype=torch.bool)
        mask[0, keys // 2 :] = False  # the first prompt pads half of its keys
    with torch.no_grad():
        expected = token_attention_reference(q.double(), k.double(), v.double(), heads, mask)
        actual = token_attention(q, k, v, heads, mask)
        direct = cpu_token_attention.token_attention_cpu(q, k, v, heads, mask)
    assert actual.dtype == torch.float32 and actual.shape == (batch, queries, channels)
    assert torch.equal(actual, direct)
    assert relative_error(actual.double(), expected) < 1e-6


def test_gathered_attention_on_the_cpu_equals_copies():
    q, k, v = qkv(1, 200, 6, 32)
    index = torch.tensor([0, 0, 0])
    keys = torch.randn(3, 6, 32)
    with torch.no_grad():
        shared = gathered_token_attention(q, keys, keys, 4, q_index=index)
        copies = token_attention_reference(q.expand(3, -1, -1).double(), keys.double(), keys.double(), 4)
    assert relative_error(shared.double(), copies) < 1e-6


def test_cpu_token_attention_is_taken_only_where_it_applies(monkeypatch):
    calls = []
    original = cpu_token_attention.token_attention_cpu
    monkeypatch.setattr(
        "promptseg.ops.decoder_attention.token_attention_cpu", lambda *args: calls.append(1) or original(*args)
    )
    q, k, v = qkv(1, 64, 5, 16)
    with torch.no_grad():
        token_attention(q, k, v, 2)
        assert calls == [1]
        token_attention(q, k, v, 2, backend="reference")  # the reference, as asked
        token_attention(q.double(), k.double(), v.double(), 2)  # float64: the reference
    assert calls == [1]
    weights = q.clone().requires_grad_()
    token_attention(weights, k, v, 2)  # a gradient wanted: the reference, whose backward is official
    assert calls == [1]
    traced = torch.jit.trace(lambda a, b, c: token_attention(a, b, c, 2), (q, k, v), check_trace=False)  # an export
    assert calls == [1] and traced.graph is not None
