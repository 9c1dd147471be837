"""The mask decoder's ops on the CPU: references, the exact composition of the two resamplings the
post-processing kernel computes, dispatch fall-backs and the fake (meta) kernels."""

from __future__ import annotations

import pytest
import torch

from promptseg.ops import (
    decoder_attention,  # the module, to reach its kernel-support rule
    extension_loaded,
    gathered_token_attention,
    kernel_available,
    mask_areas,
    mask_boxes_xyxy,
    mask_postprocess,
    mask_postprocess_reference,
    token_attention,
)

needs_extension = pytest.mark.skipif(
    not extension_loaded(), reason="the CUDA extension promptseg._C is not built (setup.py build_ext)"
)


@pytest.mark.parametrize("return_logits", [False, True])
@pytest.mark.parametrize(
    "input_size, original_size", [((64, 43), (1800, 1200)), ((48, 64), (600, 800)), ((64, 64), (7, 5))]
)
def test_mask_postprocess_reference_equals_sam(tiny_pair, input_size, original_size, return_logits):
    model = tiny_pair[1]
    low_res = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    out = mask_postprocess(low_res, input_size, original_size, model.image_encoder.img_size, model.mask_threshold,
                           return_logits, with_stats=True)
    logits = model.postprocess_masks(low_res, input_size, original_size)
    binary = logits > model.mask_threshold
    assert torch.equal(out.masks, logits if return_logits else binary)
    assert torch.equal(out.boxes, mask_boxes_xyxy(binary)) and torch.equal(out.areas, mask_areas(binary))
    plain = mask_postprocess(low_res, input_size, original_size, model.image_encoder.img_size)
    assert plain.boxes is None and plain.areas is None and torch.equal(plain.masks, binary)


def _taps(scale: float, out_size: int, in_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel's bilinear taps along one axis (float32 arithmetic): first, second index, far weight."""
    source = torch.clamp(torch.tensor(scale, dtype=torch.float32) * (torch.arange(out_size, dtype=torch.float32) + 0.5) - 0.5, min=0.0)
    first = source.long()
    second = first + (first < in_size - 1).long()
    return first, second, source - first.float()


def _composed_postprocess(low_res: torch.Tensor, input_size, original_size, image_size: int) -> torch.Tensor:
    """What csrc/mask_postprocess.cu computes, per output pixel straight from the low-res logits."""
    low_h, low_w = low_res.shape[-2:]
    rows = _taps(input_size[0] / original_size[0], original_size[0], input_size[0])
    cols = _taps(input_size[1] / original_size[1], original_size[1], input_size[1])
    x = low_res.float()

    def frame(row_index: torch.Tensor, col_index: torch.Tensor) -> torch.Tensor:
        """Stage 1 (low-res -> S x S frame) at frame rows ``row_index`` and columns ``col_index``."""
        r0, r1, wr = (t[row_index] for t in _taps(low_h / image_size, image_size, low_h))
        c0, c1, wc = (t[col_index] for t in _taps(low_w / image_size, image_size, low_w))
        wr, wc = wr[:, None], wc[None, :]
        top = (1 - wc) * x[..., r0[:, None], c0[None, :]] + wc * x[..., r0[:, None], c1[None, :]]
        bottom = (1 - wc) * x[..., r1[:, None], c0[None, :]] + wc * x[..., r1[:, None], c1[None, :]]
        return (1 - wr) * top + wr * bottom

    wr, wc = rows[2][:, None], cols[2][None, :]
    top = (1 - wc) * frame(rows[0], cols[0]) + wc * frame(rows[0], cols[1])
    bottom = (1 - wc) * frame(rows[1], cols[0]) + wc * frame(rows[1], cols[1])
    return (1 - wr) * top + wr * bottom


@pytest.mark.parametrize(
    "low, image_size, input_size, original_size",
    [(256, 1024, (683, 1024), (1200, 1800)), (256, 1024, (1024, 768), (640, 480)), (64, 256, (256, 171), (1500, 1000)),
     (256, 1024, (1024, 1024), (333, 333))],
)
def test_composed_resampling_equals_two_interpolations(low, image_size, input_size, original_size):
    """The kernel's one-pass formula (emulated in float32) equals upscale + crop + resize."""
    low_res = 4 * torch.randn(2, 1, low, low, generator=torch.Generator().manual_seed(low))
    expected = mask_postprocess_reference(low_res, input_size, original_size, image_size, return_logits=True).masks
    actual = _composed_postprocess(low_res, input_size, original_size, image_size)
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()
    differ = (actual > 0) != (expected > 0)
    assert bool((expected[differ].abs() < 1e-4).all())


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


def test_dispatch_falls_back(monkeypatch):
    q = torch.randn(2, 3, 32)
    assert not kernel_available("token_attention", q) and not kernel_available("mask_postprocess", q[None])
    # Unsupported head dims, zero keys and wide low-res logits run the reference even where a kernel exists.
    assert not decoder_attention._kernel_supports(q, q, 3) and not decoder_attention._kernel_supports(q, q[:, :0], 2)
    monkeypatch.setenv("PROMPTSEG_DISABLE_KERNELS", "1")
    assert not kernel_available("gathered_token_attention", q.bfloat16())


@needs_extension
def test_fakes_give_kernel_shapes():
    """The fake kernels (torch.compile / FakeTensor) on meta tensors."""
    q = torch.empty(5, 7, 128, dtype=torch.bfloat16, device="meta")
    image = torch.empty(2, 4096, 128, dtype=torch.bfloat16, device="meta")
    index = torch.empty(5, dtype=torch.long, device="meta")
    mask = torch.empty(5, 7, dtype=torch.bool, device="meta")
    ops = torch.ops.promptseg
    assert ops.token_attention(q, q, q, 8, mask).shape == (5, 7, 128)
    assert ops.gathered_token_attention(q, image, image, 8, None, None, index).shape == (5, 7, 128)
    assert ops.gathered_token_attention(image, q, q, 8, mask, index, None).shape == (5, 4096, 128)
    low_res = torch.empty(4, 3, 256, 256, dtype=torch.float16, device="meta")
    masks, boxes, areas = ops.mask_postprocess(low_res, [683, 1024], [1200, 1800], 1024, 0.0, False, True)
    assert (masks.shape, masks.dtype, boxes.shape, areas.shape) == ((4, 3, 1200, 1800), torch.bool, (4, 3, 4), (4, 3))
    masks, boxes, areas = ops.mask_postprocess(low_res, [683, 1024], [1200, 1800], 1024, 0.0, True, False)
    assert masks.dtype == torch.float32 and boxes.shape == areas.shape == (0,)
