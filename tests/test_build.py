"""Registry, module tree and state-dict compatibility with the official model for every model type,
plus parity of vit_l / vit_h encoder blocks (full width, 64x64 grid) with the prompt path, and the
``backend`` that ``build_sam`` sets on every attention module."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import promptseg
from promptseg.build import construct_sam
from promptseg.configs import CONFIGS
from tests._support import OFFICIAL_MISSING, load_image, model_pair, relative_error
from tests.parity import EMBEDDING_REL_ERR, assert_prediction_matches, prompt_cases

segment_anything = pytest.importorskip("segment_anything", reason=OFFICIAL_MISSING)


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


@pytest.mark.parametrize("model_type", ["default", "vit_h", "vit_l", "vit_b"])
def test_state_dict_names_and_shapes_equal_official(model_type):
    with torch.device("meta"):
        official = segment_anything.sam_model_registry[model_type]()
        ours = promptseg.sam_model_registry[model_type]()
    assert _shapes(ours) == _shapes(official)
    assert [name for name, _ in ours.named_modules()] == [name for name, _ in official.named_modules()]


def test_registry_keys_and_builders():
    assert set(promptseg.sam_model_registry) == {"default", "vit_h", "vit_l", "vit_b", "vit_tiny"}
    assert promptseg.sam_model_registry["default"] is promptseg.build_sam_vit_h
    with torch.device("meta"):
        model = promptseg.build_sam("vit_l")
    assert len(model.image_encoder.blocks) == 24


def test_state_dicts_load_both_ways(tiny_pair):
    official, ours = tiny_pair
    official.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(official.state_dict(), strict=True)


@pytest.mark.parametrize("model_type", ["vit_l", "vit_h"])
def test_full_width_blocks_and_prompt_path_match_official(model_type):
    """A windowed and a global block at full width on the 64x64 grid, the neck, and the whole prompt path."""
    config = dataclasses.replace(CONFIGS[model_type], encoder_depth=2, encoder_global_attn_indexes=(1,))
    official_model, our_model = model_pair(config, seed=3)
    image = load_image("groceries.jpg")
    official = segment_anything.SamPredictor(official_model)
    official.set_image(image)
    ours = promptseg.SamPredictor(our_model)
    ours.set_image(image)
    assert relative_error(ours.features, official.features) <= EMBEDDING_REL_ERR
    height, width = image.shape[:2]
    for case, prompt in prompt_cases(height, width).items():
        expected = official.predict(**prompt, multimask_output=True)
        assert_prediction_matches(expected, ours.predict(**prompt, multimask_output=True), f"{model_type} {case}")


def test_tiny_config_parity(tiny_pair, images):
    """The small test config (used by fast tests) is itself faithful, including window padding 16 -> 21."""
    official_model, our_model = tiny_pair
    official = segment_anything.SamPredictor(official_model)
    ours = promptseg.SamPredictor(our_model)
    for name, image in images.items():
        official.set_image(image)
        ours.set_image(image)
        assert relative_error(ours.features, official.features) <= EMBEDDING_REL_ERR
        height, width = image.shape[:2]
        for case, prompt in prompt_cases(height, width).items():
            expected = official.predict(**prompt)
            assert_prediction_matches(expected, ours.predict(**prompt), f"tiny {name} {case}")


def test_construct_sam_is_eval_and_fp32():
    from tests._support import TINY

    model = construct_sam(TINY)
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert np.isclose(model.pixel_mean.flatten()[0].item(), 123.675)


def test_backend_reference_is_set_on_every_attention_module():
    import promptseg
    from tests._support import TINY
    from promptseg.build import construct_sam

    with torch.device("meta"):
        model = promptseg.build_sam("vit_b", backend="reference")
    backends = {m.backend for m in model.modules() if hasattr(m, "backend")}
    assert backends == {"reference"}
    # 12 encoder attentions, 2 blocks x 3 and the final decoder attention, the mask decoder (its output head)
    assert len([m for m in model.modules() if hasattr(m, "backend")]) == 12 + 2 * 3 + 1 + 1
    with pytest.raises(ValueError, match=r"backend must be one of \['auto', 'reference', 'kernels'\], got 'fast'"):
        promptseg.build_sam("vit_b", backend="fast")
    assert {m.backend for m in construct_sam(TINY).modules() if hasattr(m, "backend")} == {"auto"}
