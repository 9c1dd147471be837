"""Building SAM 2 models without hydra: official config names, overrides, checkpoints (strict, the
video-only weights skipped and named), clear errors."""

from __future__ import annotations

import logging

import pytest
import torch

from promptseg.errors import CheckpointError
from promptseg.sam2 import build_sam2, build_sam2_hf
from promptseg.sam2.build_sam import HF_MODEL_ID_TO_FILENAMES, build_sam2_video_predictor
from promptseg.sam2.checkpoint import load_image_state_dict, split_video_weights
from promptseg.sam2.configs import CONFIG_FILES, HIERA_SIZES, apply_overrides, config_name, model_config
from promptseg.sam2.modeling.sam2_base import VIDEO_ONLY_PREFIXES
from tests.sam2._support import OFFICIAL_SAM2_MISSING, config_file, official_sam2


def test_config_names():
    assert config_name("configs/sam2.1/sam2.1_hiera_b+.yaml") == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    assert config_name("configs/sam2/sam2_hiera_l") == "configs/sam2/sam2_hiera_l.yaml"
    assert config_name("sam2_hiera_t.yaml") == "sam2_hiera_t.yaml"
    assert {config for config, _ in HF_MODEL_ID_TO_FILENAMES.values()} <= set(CONFIG_FILES)
    with pytest.raises(ValueError, match="unknown SAM 2 config 'sam2.1_hiera_xl.yaml'.*sam2.1/sam2.1_hiera_t.yaml"):
        config_name("sam2.1_hiera_xl.yaml")


def test_configs_equal_the_official_yaml():
    """The Python configs are the official YAML ``model:`` trees without targets and video sections."""
    pytest.importorskip("sam2.build_sam", reason=OFFICIAL_SAM2_MISSING)
    from hydra import compose
    from omegaconf import OmegaConf

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "_target_"}
        return node

    for name in CONFIG_FILES:
        official = OmegaConf.to_container(compose(config_name=name).model, resolve=True)
        for section in ("memory_attention", "memory_encoder"):
            official.pop(section)
        assert model_config(name) == strip(official), name


def test_overrides():
    config = apply_overrides(model_config("configs/sam2.1/sam2.1_hiera_t.yaml"), [
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "model.image_size=512",
        "+model.image_encoder.trunk.drop_path_rate=0.1",
        "++model.image_encoder.trunk.window_spec=[8, 4, 14, 7]",
    ])
    assert config["sam_mask_decoder_extra_args"] == {
        "dynamic_multimask_via_stability": True,
        "dynamic_multimask_stability_delta": 0.05,
    }
    assert config["image_size"] == 512
    assert config["image_encoder"]["trunk"]["drop_path_rate"] == 0.1
    assert config["image_encoder"]["trunk"]["window_spec"] == [8, 4, 14, 7]
    for bad, message in [
        ("model.no_such_option=1", "no option 'no_such_option'"),
        ("++model.memory_attention.d_model=256", "video model"),
        ("++model._target_=x", "model options only"),
        ("model.image_size", "must look like"),
    ]:
        with pytest.raises(ValueError, match=message):
            apply_overrides(model_config("sam2_hiera_t.yaml"), [bad])


def test_build_applies_postprocessing_and_mode():
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu")
    decoder = model.sam_mask_decoder
    assert not model.training and decoder.dynamic_multimask_via_stability
    assert (decoder.dynamic_multimask_stability_delta, decoder.dynamic_multimask_stability_thresh) == (0.05, 0.98)
    plain = build_sam2("configs/sam2/sam2_hiera_t.yaml", device="cpu", mode="train", apply_postprocessing=False)
    assert plain.training and not plain.sam_mask_decoder.dynamic_multimask_via_stability
    assert not plain.no_obj_embed_spatial and model.no_obj_embed_spatial  # a SAM 2.1 video option, stored
    assert model.sam_image_embedding_size == 64 and model.image_encoder.trunk.channel_list == [768, 384, 192, 96]


@pytest.mark.parametrize("generation", ["2.1", "2"])
def test_official_checkpoint_file_loads_both_ways_strictly(tmp_path, caplog, generation):
    """One ``{"model": ...}`` file of random official weights: the official builder loads it strictly,
    promptseg loads its image weights strictly and names the video-only weights it skipped."""
    official_build = pytest.importorskip("sam2.build_sam", reason=OFFICIAL_SAM2_MISSING).build_sam2
    official = official_sam2("t", seed=3, generation=generation)
    path = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": official.state_dict()}, path)
    reloaded = official_build(config_file("t", generation), ckpt_path=str(path), device="cpu")
    with caplog.at_level(logging.INFO, logger="promptseg.sam2.checkpoint"):
        ours = build_sam2(config_file("t", generation), ckpt_path=path, device="cpu")
    skipped = [record.getMessage() for record in caplog.records if "video-only" in record.getMessage()]
    assert len(skipped) == 1 and "memory_attention, memory_encoder" in skipped[0], skipped
    expected = reloaded.state_dict()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, expected[key]), key
    image, video = split_video_weights(expected)
    assert set(image) == set(ours.state_dict())
    assert all(key.startswith(VIDEO_ONLY_PREFIXES) for key in set(expected) - set(image))
    assert "maskmem_tpos_enc" in video and ("no_obj_embed_spatial" in video) == (generation == "2.1")


def test_checkpoint_errors(tmp_path):
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu")
    state = model.state_dict()
    with pytest.raises(CheckpointError, match="Hiera-t SAM 2 model, but the config builds Hiera-s.*sam2.1_hiera_t"):
        load_image_state_dict(build_sam2("configs/sam2.1/sam2.1_hiera_s.yaml", device="cpu"), state)
    broken = dict(state)
    del broken["no_mem_embed"]
    broken["sam_mask_decoder.extra.weight"] = torch.zeros(1)
    broken["sam_mask_decoder.iou_token.weight"] = torch.zeros(2, 256)
    with pytest.raises(CheckpointError) as error:
        load_image_state_dict(model, broken, source="x.pt")
    message = str(error.value)
    assert "x.pt does not match" in message and "missing keys (1): no_mem_embed" in message
    assert "unexpected keys (1): sam_mask_decoder.extra.weight" in message
    assert "sam_mask_decoder.iou_token.weight: checkpoint (2, 256), model (1, 256)" in message
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=tmp_path / "missing.pt", device="cpu")


def test_hiera_sizes_match_their_configs():
    for size, spec in HIERA_SIZES.items():
        model = build_sam2(config_file(size), device="meta")
        trunk = model.image_encoder.trunk
        assert len(trunk.blocks) == spec["blocks"] and trunk.channel_list == spec["channels"], size


def test_unsupported_requests_say_so():
    with pytest.raises(ValueError, match="unknown SAM 2 model id 'facebook/sam3'"):
        build_sam2_hf("facebook/sam3")
    with pytest.raises(NotImplementedError, match="image models only"):
        build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml")
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu")
    with pytest.raises(NotImplementedError, match="SAM2ImagePredictor"):
        model(torch.zeros(1, 3, 1024, 1024))
    with pytest.raises(ValueError, match="memory_attention=None"):
        type(model)(model.image_encoder, memory_attention=torch.nn.Identity())
