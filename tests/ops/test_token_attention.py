"""The decoder's attention ops ``token_attention`` and ``gathered_token_attention``: the references
against a direct float64 formula, key padding and gathered copies (CPU), and the CUDA kernels against
float64 references, on strided inputs and poisoned memory, their input checks and opcheck (GPU,
skipped without CUDA and the extension)."""

from __future__ import annotations

import pytest
import torch

from promptseg.ops import decoder_attention, gathered_token_attention, token_attention
from tests._support import poison_allocator, relative_error
from tests.ops._support import direct_attention, needs_extension

# (relative error vs float64) of the attention kernels per dtype
KERNEL_TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 3e-3}

ATTENTION_SHAPES = [
    ("self", 8, 9, 9, 256, True),
    ("token_to_image", 8, 9, 4096, 128, False),
    ("image_to_token", 8, 4096, 9, 128, True),
    ("tiny_token_to_image", 4, 7, 256, 32, False),
    ("head_dim_64", 2, 33, 300, 128, True),
]


def _fp64_attention(q, k, v, heads, mask=None, q_index=None, kv_index=None):
    return decoder_attention.gathered_token_attention_reference(
        q.double(), k.double(), v.double(), heads, mask, q_index, kv_index
    )


def _padding_mask(prompts: int, keys: int) -> torch.Tensor:
    """(prompts, keys) bool: prompt i keeps its first 1 + i % keys keys."""
    lengths = 1 + torch.arange(prompts, device="cuda") % keys
    return torch.arange(keys, device="cuda")[None, :] < lengths[:, None]


# ---- CPU: the references ----------------------------------------------------------------------


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
            expected = direct_attention(q[batch, :, cols], k[batch, :, cols], v[batch, :, cols], 0.0)
            assert relative_error(out[batch, :, cols], expected) < 1e-12


def test_gathered_attention_reference_equals_copies():
    generator = torch.Generator().manual_seed(4)
    q = torch.randn(2, 9, 32, generator=generator, dtype=torch.float64)
    k = torch.randn(3, 5, 32, generator=generator, dtype=torch.float64)
    v = torch.randn(3, 5, 32, generator=generator, dtype=torch.float64)
    q_index, kv_index = torch.tensor([1, 0, 1, 1]), torch.tensor([2, 2, 0, 1])
    mask = torch.tensor([[True] * 5, [True, False, True, True, False], [True] * 5, [False, True, True, True, True]])
    out = gathered_token_attention(q, k, v, 4, mask, q_index=q_index, kv_index=kv_index)
    expected = token_attention(q[q_index], k[kv_index], v[kv_index], 4, mask)
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="q_index and kv_index must have one length"):
        gathered_token_attention(q, k, v, 4, q_index=q_index, kv_index=kv_index[:3])
    with pytest.raises(ValueError, match="k and v must have 4 batches"):
        gathered_token_attention(q, k, v, 4, q_index=q_index)


# ---- GPU: the kernels ------------------------------------------------------------------------


@pytest.mark.gpu
@needs_extension
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("prompts", [1, 7, 64])
@pytest.mark.parametrize("shape", ATTENTION_SHAPES, ids=[s[0] for s in ATTENTION_SHAPES])
def test_attention_kernel_matches_float64(shape, prompts, dtype):
    _, heads, nq, nk, channels, masked = shape
    generator = torch.Generator(device="cuda").manual_seed(prompts)
    q, k, v = (torch.randn(prompts, n, channels, generator=generator, device="cuda").to(dtype) for n in (nq, nk, nk))
    mask = _padding_mask(prompts, nk) if masked else None
    poison_allocator()
    out = torch.ops.promptseg.token_attention(q, k, v, heads, mask)
    assert out.dtype == dtype and out.shape == q.shape and bool(out.isfinite().all())
    assert relative_error(out, _fp64_attention(q, k, v, heads, mask)) <= KERNEL_TOLERANCE[dtype]


@pytest.mark.gpu
@needs_extension
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("prompts", [1, 7, 64, 1000])
def test_gathered_attention_kernel_shares_image_rows(prompts, dtype):
    """Token->image with shared keys/values and image->token with shared queries, 3 images."""
    generator = torch.Generator(device="cuda").manual_seed(prompts)
    tokens = torch.randn(prompts, 9, 128, generator=generator, device="cuda").to(dtype)
    image = torch.randn(3, 4096, 128, generator=generator, device="cuda").to(dtype)
    index = torch.randint(0, 3, (prompts,), generator=generator, device="cuda")
    mask = _padding_mask(prompts, 9)
    poison_allocator()
    to_image = gathered_token_attention(tokens, image, image, 8, kv_index=index)
    to_token = gathered_token_attention(image, tokens, tokens, 8, mask, q_index=index)
    assert bool(to_image.isfinite().all()) and bool(to_token.isfinite().all())
    for chunk in torch.arange(prompts, device="cuda").split(100):  # float64 references of 100 prompts at a time
        expected = _fp64_attention(tokens[chunk], image, image, 8, kv_index=index[chunk])
        assert relative_error(to_image[chunk], expected) <= KERNEL_TOLERANCE[dtype]
        expected = _fp64_attention(image, tokens[chunk], tokens[chunk], 8, mask[chunk], q_index=index[chunk])
        assert relative_error(to_token[chunk], expected) <= KERNEL_TOLERANCE[dtype]


@pytest.mark.gpu
@needs_extension
def test_attention_kernel_strided_inputs_and_fully_masked_rows():
    qkv = torch.randn(4, 12, 3 * 256, device="cuda", dtype=torch.bfloat16)
    q, k, v = qkv.split(256, dim=-1)  # row stride 768: read in place
    mask = _padding_mask(4, 12)
    out = torch.ops.promptseg.token_attention(q, k, v, 8, mask)
    assert relative_error(out, _fp64_attention(q, k, v, 8, mask)) <= KERNEL_TOLERANCE[torch.bfloat16]
    none = torch.zeros_like(mask)
    assert bool(torch.ops.promptseg.token_attention(q, k, v, 8, none).isnan().all())  # as the reference's softmax


@pytest.mark.gpu
@needs_extension
def test_kernel_input_checks_name_expected_and_given():
    q = torch.randn(2, 5, 48, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="expected head_dim 8, 16, 32 or 64, got 12"):
        torch.ops.promptseg.token_attention(q, q, q, 4)
    with pytest.raises(RuntimeError, match="expected q of dtype bfloat16 or float16, got Float"):
        torch.ops.promptseg.token_attention(q.float(), q.float(), q.float(), 3)
    with pytest.raises(RuntimeError, match=r"expected key_padding_mask of shape \(2, 5\)"):
        torch.ops.promptseg.token_attention(q, q, q, 3, torch.ones(2, 4, dtype=torch.bool, device="cuda"))


@pytest.mark.gpu
@needs_extension
def test_opcheck():
    q = torch.randn(3, 9, 128, device="cuda", dtype=torch.bfloat16)
    image = torch.randn(2, 256, 128, device="cuda", dtype=torch.bfloat16)
    index = torch.tensor([0, 1, 1], device="cuda")
    mask = _padding_mask(3, 9)
    ops = torch.ops.promptseg
    torch.library.opcheck(ops.token_attention.default, (q, q, q, 8, mask))
    torch.library.opcheck(ops.gathered_token_attention.default, (q, image, image, 8, None, None, index))
    torch.library.opcheck(ops.gathered_token_attention.default, (image, q, q, 8, mask, index, None))
