"""bf16 and fp16 models stay within documented tolerances of fp32 (README "Precision")."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import promptseg
from promptseg.build import construct_sam
from promptseg.configs import VIT_B
from tests._support import load_image, model_pair, relative_error
from tests.parity import prompt_cases

# (embedding rel. error, low-res logits rel. error, IoU abs. error, fraction of differing mask pixels)
TOLERANCES = {
    torch.bfloat16: (2e-2, 3e-2, 1e-2, 1e-2),
    torch.float16: (3e-3, 5e-3, 2e-3, 2e-3),
}
# vit_b width and heads, 2 windowed + 2 global blocks, at 512x512 (fp16 matmuls are slow on CPUs).
REDUCED_VIT_B = dataclasses.replace(VIT_B, encoder_depth=4, encoder_global_attn_indexes=(1, 3), image_size=512)


@pytest.fixture(scope="module")
def fp32_reference():
    _, model = model_pair(REDUCED_VIT_B, seed=5)
    predictor = promptseg.SamPredictor(model)
    predictor.set_image(load_image("truck.jpg"))
    return model, predictor


def _assert_within(reference: promptseg.SamPredictor, low: promptseg.SamPredictor, dtype: torch.dtype) -> None:
    emb_tol, logit_tol, iou_tol, mask_tol = TOLERANCES[dtype]
    assert relative_error(low.features.float(), reference.features) <= emb_tol
    height, width = reference.original_size
    for case, prompt in prompt_cases(height, width).items():
        masks, scores, logits = reference.predict(**prompt)
        low_masks, low_scores, low_logits = low.predict(**prompt)
        assert low_logits.dtype == np.float32 and low_scores.dtype == np.float32 and low_masks.dtype == np.bool_
        assert relative_error(low_logits, logits) <= logit_tol, case
        assert np.abs(low_scores - scores).max() <= iou_tol, case
        assert (low_masks != masks).mean() <= mask_tol, case


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_tolerance(fp32_reference, dtype):
    model, reference = fp32_reference
    low_model = construct_sam(REDUCED_VIT_B)
    low_model.load_state_dict(model.state_dict())
    low_model = low_model.to(dtype=dtype)
    assert low_model.image_encoder.patch_embed.proj.weight.dtype == dtype
    low = promptseg.SamPredictor(low_model)
    low.set_image(load_image("truck.jpg"))
    assert low.features.dtype == dtype
    _assert_within(reference, low, dtype)


def test_bf16_vit_b_end_to_end(vit_b_pair, images, vit_b_encoder_memo):
    """Full vit_b in bf16 against fp32 (of the same weights, equal to the official within 1e-4).
    The fp32 forward of truck.jpg is the one test_parity_official made, where the session has it."""
    _, model = vit_b_pair
    reference = promptseg.SamPredictor(model)
    with vit_b_encoder_memo.active(model):
        reference.set_image(images["truck.jpg"])
    bf16_model = construct_sam(VIT_B)
    bf16_model.load_state_dict(model.state_dict())
    low = promptseg.SamPredictor(bf16_model.to(dtype=torch.bfloat16))
    low.set_image(images["truck.jpg"])
    _assert_within(reference, low, torch.bfloat16)
