"""The fake (meta) kernels of the decoder's ops (``token_attention``, ``gathered_token_attention``,
``mask_postprocess``), as torch.compile / FakeTensor see them."""

from __future__ import annotations

import torch

from tests.ops._support import needs_extension


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


@needs_extension
def test_fakes_still_describe_the_kernels_outputs():
    q = torch.empty(2, 5, 64, dtype=torch.bfloat16, device="meta")
    assert torch.ops.promptseg.token_attention(q, q, q, 4).shape == (2, 5, 64)
