"""The CPU byte-view reductions of ops.mask_stats and masks.stability_score against plain references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptseg.masks import stability_score
from promptseg.ops import fast_reductions_apply, mask_areas, mask_boxes_xyxy, true_counts


def reference_areas(masks: torch.Tensor) -> torch.Tensor:
    """Counts through numpy int64, with nothing in common with the byte-view path."""
    array = masks.numpy().astype(np.int64)
    pixels = array.shape[-2] * array.shape[-1]
    return torch.from_numpy(np.asarray(array.reshape(*array.shape[:-2], pixels).sum(-1)))


def reference_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Inclusive XYXY boxes mask by mask with numpy nonzero; [0, 0, 0, 0] when empty."""
    flat = masks.reshape(-1, *masks.shape[-2:]).numpy()
    boxes = []
    for mask in flat:
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()] if len(ys) else [0, 0, 0, 0])
    return torch.tensor(boxes, dtype=torch.int64).reshape(*masks.shape[:-2], 4)


def reference_stability(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """The official formula: int16 row sums, int32 totals (exact for rows of at most 32767 pixels)."""
    inner = (logits > threshold + offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    outer = (logits > threshold - offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return inner / outer


SHAPES = [(3, 37, 53), (2, 2, 1, 1), (5, 1, 129), (4, 131, 1), (7, 9), (2, 3, 65, 300)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 1.0])
def test_areas_and_boxes_match_references(shape, density):
    generator = torch.Generator().manual_seed(hash((shape, density)) % 2**31)
    masks = torch.rand(shape, generator=generator) < density
    assert fast_reductions_apply(masks)
    assert torch.equal(mask_areas(masks), reference_areas(masks))
    assert mask_areas(masks).dtype == torch.int64
    assert torch.equal(mask_boxes_xyxy(masks), reference_boxes(masks))


def test_strided_and_transposed_masks():
    generator = torch.Generator().manual_seed(1)
    base = torch.rand(3, 50, 70, generator=generator) < 0.3
    for masks in (base.transpose(1, 2).contiguous().transpose(1, 2), base[:, 3:41:2, 5::3], base.transpose(-1, -2),
                  base[:, :, 7:8], base[:, None].expand(3, 4, 50, 70)):
        assert torch.equal(mask_areas(masks), reference_areas(masks))
        assert torch.equal(mask_boxes_xyxy(masks), reference_boxes(masks))


@pytest.mark.parametrize("shape", [(2, 0, 5), (2, 5, 0), (0, 4, 4)])
def test_empty_shapes(shape):
    masks = torch.zeros(shape, dtype=torch.bool)
    assert torch.equal(mask_areas(masks), torch.zeros(shape[:-2], dtype=torch.int64))
    assert mask_boxes_xyxy(masks).shape == (*shape[:-2], 4)


@pytest.mark.parametrize("long_axis", [-1, -2])
def test_lines_longer_than_int16_do_not_overflow(long_axis):
    # All-True lines of 70000 pixels: an int16 line sum would wrap (70000 mod 65536 = 4464).
    shape = (2, 3, 70001) if long_axis == -1 else (2, 70001, 3)
    masks = torch.ones(shape, dtype=torch.bool)
    masks[1, 0, 0] = False
    assert torch.equal(mask_areas(masks), torch.tensor([3 * 70001, 3 * 70001 - 1]))
    assert torch.equal(mask_boxes_xyxy(masks)[0], torch.tensor([0, 0, shape[2] - 1, shape[1] - 1]))
    column_major = masks.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert torch.equal(mask_areas(column_major), mask_areas(masks))


def test_lines_of_32767_pixels_and_planes_beyond_int16():
    masks = torch.ones(2, 40, 32767, dtype=torch.bool)
    masks[0, :, ::2] = False
    assert torch.equal(mask_areas(masks), reference_areas(masks))
    assert mask_areas(masks)[1] == 40 * 32767 > 2**20


def test_non_bool_and_traced_inputs_take_the_plain_sum():
    masks = torch.rand(2, 6, 7, generator=torch.Generator().manual_seed(2)) < 0.5
    assert not fast_reductions_apply(masks.to(torch.uint8))
    assert torch.equal(mask_areas(masks.to(torch.uint8)), reference_areas(masks))
    traced = torch.jit.trace(mask_areas, (masks,))
    assert torch.equal(traced(masks), reference_areas(masks))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        mask_areas(torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool CPU masks"):
        true_counts(torch.ones(2, 2))


@pytest.mark.parametrize("shape", [(3, 45, 67), (2, 1, 1), (4, 1, 33000)])
def test_stability_score_equals_the_official_formula(shape):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(shape, generator=generator) * 2
    logits[0] = -5.0  # an empty looser mask: 0 / 0 = NaN, as the official code
    expected = reference_stability(logits, 0.0, 1.0)
    got = stability_score(logits, 0.0, 1.0)
    assert got.dtype == torch.float32
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got[~got.isnan()], expected[~expected.isnan()])


def test_stability_score_traced_keeps_int32_counts():
    logits = torch.randn(3, 20, 30, generator=torch.Generator().manual_seed(4))
    traced = torch.jit.trace(lambda x: stability_score(x, 0.0, 1.0), (logits,))
    assert "Int" in str(traced.graph) and "Byte" not in str(traced.graph)
    assert torch.equal(traced(logits), reference_stability(logits, 0.0, 1.0))


def test_counts_in_many_slabs_equal_one_pass(monkeypatch):
    import promptseg.ops.mask_stats as mask_stats

    masks = torch.rand(2, 3, 41, 29, generator=torch.Generator().manual_seed(5)) < 0.4
    whole = true_counts(masks)
    monkeypatch.setattr(mask_stats, "SLAB_BYTES", 64)
    for view in (masks, masks.transpose(-1, -2).contiguous().transpose(-1, -2)):
        assert torch.equal(true_counts(view), whole)
        assert torch.equal(whole, reference_areas(masks))
