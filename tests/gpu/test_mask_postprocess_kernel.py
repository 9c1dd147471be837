"""GPU: the ``mask_postprocess`` kernel against its reference (logits, masks, boxes, areas), on
poisoned memory, its input checks and opcheck. Skipped without CUDA and the extension."""

from __future__ import annotations

import pytest
import torch

from promptseg.ops import extension_loaded, mask_areas, mask_boxes_xyxy, mask_postprocess_reference
from tests._support import poison_allocator

needs_extension = pytest.mark.skipif(
    not extension_loaded(), reason="the CUDA extension promptseg._C is not built (setup.py build_ext)"
)

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
