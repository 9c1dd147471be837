"""The mask post-processing op ``mask_postprocess``: its reference against ``Sam.postprocess_masks``
and the exact composition of the two resamplings the kernel computes (CPU), and the CUDA kernel
against its reference (logits, masks, boxes, areas), on poisoned memory, its input checks and
opcheck (GPU, skipped without CUDA and the extension)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from promptseg.ops import mask_areas, mask_boxes_xyxy, mask_postprocess, mask_postprocess_reference, upscale_mask_logits
from tests._support import poison_allocator
from tests.ops._support import needs_extension


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


# ---- GPU: the kernel -------------------------------------------------------------------------


@pytest.mark.gpu
@needs_extension
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("input_size, original_size", [((683, 1024), (1200, 1800)), ((1024, 768), (4000, 3000)), ((1024, 1024), (97, 97))])
def test_mask_postprocess_kernel_matches_reference(dtype, input_size, original_size):
    low_res = (8 * torch.randn(5, 3, 256, 256, device="cuda")).to(dtype)
    poison_allocator()
    masks, boxes, areas = torch.ops.promptseg.mask_postprocess(low_res, input_size, original_size, 1024, 0.0, True, True)
    expected = mask_postprocess_reference(low_res, input_size, original_size, 1024, return_logits=True).masks
    assert (masks - expected).abs().max() <= 1e-5 * expected.abs().max()
    binary, _, _ = torch.ops.promptseg.mask_postprocess(low_res, input_size, original_size, 1024, 0.0, False, False)
    assert torch.equal(binary, masks > 0)
    differ = binary != (expected > 0)
    assert bool((expected[differ].abs() < 1e-3).all())
    assert torch.equal(boxes, mask_boxes_xyxy(binary)) and torch.equal(areas, mask_areas(binary))


@pytest.mark.gpu
@needs_extension
def test_mask_postprocess_kernel_empty_and_full_masks():
    low_res = torch.cat([torch.full((1, 1, 256, 256), -5.0), torch.full((1, 1, 256, 256), 5.0)], 1).cuda().half()
    masks, boxes, areas = torch.ops.promptseg.mask_postprocess(low_res, [683, 1024], [1200, 1800], 1024, 0.0, False, True)
    assert areas.tolist() == [[0, 1200 * 1800]] and boxes.tolist() == [[[0, 0, 0, 0], [0, 0, 1799, 1199]]]


@pytest.mark.gpu
@needs_extension
def test_mask_postprocess_input_checks_and_opcheck():
    q = torch.randn(2, 5, 48, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="expected a contiguous low_res"):
        torch.ops.promptseg.mask_postprocess(q.reshape(2, 5, 6, 8).transpose(2, 3), [8, 8], [9, 9], 8, 0.0, False, False)
    low_res = torch.randn(2, 3, 64, 64, device="cuda", dtype=torch.float16)
    op = torch.ops.promptseg.mask_postprocess.default
    torch.library.opcheck(op, (low_res, [200, 256], [300, 400], 256, 0.0, False, True))
    torch.library.opcheck(op, (low_res, [256, 131], [1000, 512], 256, 0.5, True, False))


def test_upscale_of_strided_logits_is_bit_identical_to_pytorchs():
    """``upscale_mask_logits`` makes its strided inputs contiguous (PyTorch's CPU kernel copies a
    strided input's output twice): the values stay the two interpolations', bit for bit."""
    generator = torch.Generator().manual_seed(0)
    for input_size, original_size in [((683, 1024), (601, 901)), ((1024, 517), (333, 167)), ((1, 1024), (2, 17))]:
        low_res = torch.randn(2, 4, 256, 256, generator=generator)[:, 1:]  # the 3 multimask outputs: strided
        frame = F.interpolate(low_res, (1024, 1024), mode="bilinear", align_corners=False)
        crop = frame[..., : input_size[0], : input_size[1]]
        expected = F.interpolate(crop, original_size, mode="bilinear", align_corners=False)
        assert torch.equal(upscale_mask_logits(low_res, input_size, original_size, 1024), expected)


@pytest.mark.parametrize("input_size", [(256, 256), (256, 171), (97, 256)])
def test_a_resize_to_the_crops_own_size_is_skipped_bit_for_bit(input_size):
    """When the crop already has the original size (a 256-pixel image on the bundled model, a 1024 x 1024
    photo on SAM), the final resize is an identity on finite logits and is skipped: the result equals the
    two interpolations' bit for bit. Non-finite logits keep the resize, which turns an infinity into NaN."""
    generator = torch.Generator().manual_seed(1)
    low_res = torch.randn(2, 4, 64, 64, generator=generator)[:, 1:]
    crop = F.interpolate(low_res, (256, 256), mode="bilinear", align_corners=False)[..., : input_size[0], : input_size[1]]
    expected = F.interpolate(crop, input_size, mode="bilinear", align_corners=False)
    assert torch.equal(upscale_mask_logits(low_res, input_size, input_size, 256), expected)
    low_res = low_res.clone()
    low_res[0, 1, 10, 20], low_res[1, 0, 0, 0] = float("inf"), float("nan")
    crop = F.interpolate(low_res, (256, 256), mode="bilinear", align_corners=False)[..., : input_size[0], : input_size[1]]
    expected = F.interpolate(crop, input_size, mode="bilinear", align_corners=False)
    assert torch.equal(upscale_mask_logits(low_res, input_size, input_size, 256).isnan(), expected.isnan())
    assert torch.equal(upscale_mask_logits(low_res, input_size, input_size, 256).nan_to_num(), expected.nan_to_num())
