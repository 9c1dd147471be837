"""The reference model on a CUDA device: fp32 parity and bf16/fp16 tolerances. Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import promptseg
from promptseg.build import construct_sam
from promptseg.configs import VIT_B
from tests._support import OFFICIAL_MISSING, relative_error
from tests.parity import EMBEDDING_REL_ERR, assert_prediction_matches, prompt_cases
from tests.test_precision import TOLERANCES

segment_anything = pytest.importorskip("segment_anything", reason=OFFICIAL_MISSING)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_reference(vit_b_pair, images):
    official_model, model = vit_b_pair
    official = segment_anything.SamPredictor(official_model)
    official.set_image(images["truck.jpg"])
    return official, model


@pytest.fixture
def no_tf32():
    """Plain fp32 GEMMs and convolutions (cuDNN uses TF32 for fp32 convolutions by default)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_fp32_on_cuda_matches_official_cpu(cuda_reference, images, no_tf32):
    official, model = cuda_reference
    ours = promptseg.SamPredictor(construct_sam(VIT_B).to("cuda"))
    ours.model.load_state_dict(model.state_dict())
    ours.set_image(images["truck.jpg"])
    assert ours.features.is_cuda
    # fp32 on another device sums in another order: allow 10x the CPU tolerances.
    assert relative_error(ours.features.cpu(), official.features) <= 10 * EMBEDDING_REL_ERR
    height, width = images["truck.jpg"].shape[:2]
    for case, prompt in prompt_cases(height, width).items():
        assert_prediction_matches(official.predict(**prompt), ours.predict(**prompt), f"cuda {case}", scale=10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_cuda(cuda_reference, images, dtype):
    official, model = cuda_reference
    low_model = construct_sam(VIT_B)
    low_model.load_state_dict(model.state_dict())
    low = promptseg.SamPredictor(low_model.to(device="cuda", dtype=dtype))
    low.set_image(images["truck.jpg"])
    emb_tol, logit_tol, iou_tol, mask_tol = TOLERANCES[dtype]
    assert relative_error(low.features.float().cpu(), official.features) <= emb_tol
    height, width = images["truck.jpg"].shape[:2]
    for case, prompt in prompt_cases(height, width).items():
        masks, scores, logits = official.predict(**prompt)
        low_masks, low_scores, low_logits = low.predict(**prompt)
        assert relative_error(low_logits, logits) <= logit_tol, case
        assert np.abs(low_scores - scores).max() <= iou_tol, case
        assert (low_masks != masks).mean() <= mask_tol, case
    many = low.predict_many([prompt for prompt in prompt_cases(height, width).values()])
    assert many[0].shape[0] == 4
