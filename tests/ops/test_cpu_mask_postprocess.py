"""The mask post-processing's CPU path (promptseg.ops.cpu_mask_postprocess) against the reference
(two bilinear resizes, then the threshold): equal masks at every pixel whose reference logit is not
within the stated tolerance of the threshold, over odd sizes, downsampling, constant maps, exact zeros,
thresholds other than 0, strided and non-float32 inputs; NaN and infinities fall back to the reference;
and where the path is (not) taken."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from promptseg.ops import (
    cpu_mask_postprocess,
    mask_areas,
    mask_boxes_xyxy,
    mask_postprocess,
    mask_postprocess_reference,
)


def smooth_logits(shape, seed=0, cells=5, scale=12.0, offset=-3.0):
    """(P, M, h, w) blob-like logits: a coarse random field upscaled (bicubic), as a decoder's masks."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(shape[0] * shape[1], 1, cells, cells, generator=generator)
    fine = F.interpolate(coarse, tuple(shape[2:]), mode="bicubic", align_corners=False)
    return (scale * fine + offset).view(shape)


def assert_matches_reference(low_res, input_size, original_size, image_size, threshold=0.0):
    """The CPU path's masks equal the reference's except where the reference logit is within the
    tolerance of the threshold; returns the masks."""
    before = low_res.clone()
    masks = cpu_mask_postprocess.mask_postprocess_cpu(low_res, input_size, original_size, image_size, threshold)
    assert torch.equal(low_res, before), "the caller's logits were modified"
    logits = mask_postprocess_reference(low_res, input_size, original_size, image_size, threshold, True).masks
    assert masks.dtype == torch.bool and masks.shape == logits.shape
    tolerance = cpu_mask_postprocess.TOLERANCE * (1 + low_res.float().abs().max())
    differ = masks != (logits > threshold)
    assert bool(((logits[differ] - threshold).abs() <= tolerance).all()), f"{int(differ.sum())} pixels differ"
    return masks


@pytest.mark.parametrize(
    "shape, input_size, original_size, image_size",
    [
        ((1, 3, 64, 64), (256, 171), (600, 400), 256),  # bundled-like, portrait
        ((2, 2, 37, 51), (200, 256), (90, 1000), 256),  # odd low-res, stage 2 down rows / up columns
        ((1, 1, 64, 64), (256, 256), (256, 256), 256),  # input_size == (S, S), no resize in stage 2
        ((1, 2, 64, 64), (256, 100), (33, 20), 256),  # original smaller than input (downsampling)
        ((1, 1, 64, 64), (256, 171), (1, 1), 256),
        ((1, 1, 64, 64), (171, 256), (1, 45), 256),
        ((1, 1, 64, 64), (171, 256), (45, 1), 256),
        ((3, 1, 32, 32), (128, 97), (427, 301), 128),  # odd width: bytes, not words
        ((1, 1, 32, 32), (128, 97), (100, 302), 128),  # width = 2 (mod 4)
        ((1, 1, 32, 32), (128, 97), (100, 300), 128),  # width = 4 (mod 8)
        ((1, 1, 32, 32), (128, 97), (100, 20), 128),  # a column tile narrower than 32
        ((1, 1, 300, 280), (256, 200), (90, 70), 256),  # low-res larger than the frame
    ],
)
@pytest.mark.parametrize("kind", ["smooth", "noise"])
def test_cpu_masks_match_the_reference(shape, input_size, original_size, image_size, kind):
    generator = torch.Generator().manual_seed(sum(shape))
    low_res = smooth_logits(shape) if kind == "smooth" else 3 * torch.randn(shape, generator=generator)
    assert_matches_reference(low_res, input_size, original_size, image_size)


@pytest.mark.parametrize("threshold", [-3.5, 2.0, 0.0])
def test_cpu_masks_at_other_thresholds(threshold):
    assert_matches_reference(smooth_logits((2, 3, 37, 51), seed=1), (256, 190), (301, 451), 256, threshold)


def test_cpu_masks_of_a_vit_b_click():
    """A 1800x1200 photo's multimask output from 256x256 logits (vit_b's shapes)."""
    assert_matches_reference(smooth_logits((1, 3, 256, 256), cells=7), (683, 1024), (1200, 1800), 1024)


def test_noise_like_masks_take_the_banded_form_and_blobs_the_tiles(monkeypatch):
    """Masks whose tiles mostly straddle the threshold (a model with random weights) are computed whole
    (``_banded_masks``); blob-like masks tile by tile. Both match the reference."""
    calls = []
    original = cpu_mask_postprocess._banded_masks
    monkeypatch.setattr(cpu_mask_postprocess, "_banded_masks", lambda *args: calls.append(1) or original(*args))
    generator = torch.Generator().manual_seed(5)
    noise = 0.3 * torch.randn(1, 3, 256, 256, generator=generator)
    assert_matches_reference(noise, (683, 1024), (1200, 1800), 1024)
    assert calls == [1]
    assert_matches_reference(smooth_logits((1, 3, 256, 256), cells=7), (683, 1024), (1200, 1800), 1024)
    assert calls == [1]


@pytest.mark.parametrize("value", [0.0, 2.0, 5.0, -1.0])
@pytest.mark.parametrize("threshold", [0.0, 2.0])
def test_cpu_masks_of_constant_maps(value, threshold):
    low_res = torch.full((1, 2, 16, 16), value)
    masks = assert_matches_reference(low_res, (64, 48), (70, 50), 64, threshold)
    if value != threshold:
        assert bool((masks == (value > threshold)).all())


def test_cpu_masks_with_exact_zeros():
    """Half the logits exactly 0 (ReLU'd noise): at threshold 0 every tile over zeros is False exactly."""
    low_res = torch.relu(torch.randn(2, 2, 40, 40, generator=torch.Generator().manual_seed(3)))
    low_res[:, :, :, :20] = 0.0
    masks = assert_matches_reference(low_res, (160, 120), (300, 250), 160)
    assert not masks[..., :100].any()


def test_cpu_masks_of_strided_and_other_dtypes():
    """A view of 3 of 4 masks (the multimask slice) and the caller's tensor untouched; bf16 and fp64
    are computed in float32 as the reference does."""
    four = smooth_logits((2, 4, 64, 64), seed=5)
    assert_matches_reference(four[:, 1:], (256, 200), (480, 375), 256)
    assert_matches_reference(four[:, :, ::2, ::2].contiguous().transpose(2, 3), (128, 100), (90, 70), 128)
    assert_matches_reference(four.double(), (256, 200), (480, 375), 256)
    assert_matches_reference(four.bfloat16(), (256, 200), (480, 375), 256)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_logits_take_the_reference(bad):
    low_res = smooth_logits((1, 2, 32, 32), seed=2)
    low_res[0, 1, 10, 12] = bad
    assert cpu_mask_postprocess.cpu_mask_postprocess_applies(low_res, (400, 340), False)
    assert cpu_mask_postprocess.mask_postprocess_cpu(low_res, (128, 100), (400, 340), 128) is None
    out = mask_postprocess(low_res, (128, 100), (400, 340), 128, with_stats=True)
    expected = mask_postprocess_reference(low_res, (128, 100), (400, 340), 128, with_stats=True)
    assert all(torch.equal(a, b) for a, b in zip(out, expected))
    # A NaN the resizes never read (in the padding, cropped away) changes nothing.
    low_res = smooth_logits((1, 2, 32, 32), seed=2)
    low_res[0, 1, 31, 31] = bad
    assert cpu_mask_postprocess.mask_postprocess_cpu(low_res, (64, 128), (100, 160), 128) is not None


def test_empty_batch():
    masks = cpu_mask_postprocess.mask_postprocess_cpu(torch.zeros(0, 3, 16, 16), (64, 64), (30, 40), 64)
    assert masks.shape == (0, 3, 30, 40) and masks.dtype == torch.bool


def test_mask_postprocess_takes_the_cpu_path_where_it_applies(monkeypatch):
    calls = []
    original = cpu_mask_postprocess.mask_postprocess_cpu
    module = importlib.import_module("promptseg.ops.mask_postprocess")  # the attribute is the function
    monkeypatch.setattr(module, "mask_postprocess_cpu", lambda *args: calls.append(1) or original(*args))
    low_res = smooth_logits((2, 3, 32, 32), seed=4)
    out = mask_postprocess(low_res, (128, 90), (300, 211), 128, with_stats=True)
    assert calls == [1]
    assert torch.equal(out.boxes, mask_boxes_xyxy(out.masks)) and torch.equal(out.areas, mask_areas(out.masks))
    assert out.boxes.shape == (2, 3, 4) and out.areas.shape == (2, 3)
    plain = mask_postprocess(low_res, (128, 90), (300, 211), 128)
    assert plain.boxes is None and plain.areas is None and torch.equal(plain.masks, out.masks)
    mask_postprocess(low_res, (128, 90), (300, 211), 128, return_logits=True)
    mask_postprocess(low_res, (128, 90), (300, 211), 128, backend="reference")
    mask_postprocess(low_res, (128, 90), (150, 211), 128)  # 190k pixels: fewer than MIN_PIXELS
    assert calls == [1, 1]

    applies = cpu_mask_postprocess.cpu_mask_postprocess_applies
    assert applies(low_res, (300, 211), False) and applies(low_res.bfloat16(), (300, 211), False)
    assert not applies(low_res, (300, 211), True) and not applies(low_res, (150, 211), False)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not applies(low_res, (300, 211), False)
