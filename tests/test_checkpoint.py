"""Loading official checkpoints (.pth weights-only, .safetensors) and the errors for wrong ones."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

import promptseg
from promptseg import CheckpointError
from promptseg.checkpoint import identify_model_type


@pytest.fixture(scope="module")
def vit_b_state(vit_b_pair):
    official, _ = vit_b_pair
    return official.state_dict()


@pytest.fixture(scope="module")
def vit_b_pth(vit_b_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "sam_vit_b_random.pth"
    torch.save(vit_b_state, path)
    return path


def _assert_same_weights(model: torch.nn.Module, state: dict) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_pth_loads_through_registry_and_build_sam(vit_b_pth, vit_b_state):
    _assert_same_weights(promptseg.sam_model_registry["vit_b"](checkpoint=vit_b_pth), vit_b_state)
    _assert_same_weights(promptseg.build_sam("vit_b", checkpoint=str(vit_b_pth)), vit_b_state)


def test_official_positional_call_and_model_type_from_file(vit_b_pth, vit_b_state):
    # segment_anything.build_sam(checkpoint) takes the checkpoint as its first argument.
    _assert_same_weights(promptseg.build_sam(str(vit_b_pth)), vit_b_state)
    _assert_same_weights(promptseg.build_sam(None, checkpoint=vit_b_pth), vit_b_state)


def test_safetensors_loads(vit_b_state, tmp_path):
    path = tmp_path / "sam_vit_b.safetensors"
    save_file({k: v.contiguous() for k, v in vit_b_state.items()}, str(path))
    _assert_same_weights(promptseg.build_sam("vit_b", checkpoint=path), vit_b_state)


def test_wrapped_training_checkpoint_loads(vit_b_state, tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": vit_b_state}, path)
    _assert_same_weights(promptseg.build_sam("vit_b", checkpoint=path), vit_b_state)


def test_our_checkpoint_loads_into_official(tmp_path):
    segment_anything = pytest.importorskip("segment_anything")

    ours = promptseg.build_sam("vit_b")
    path = tmp_path / "ours.pth"
    torch.save(ours.state_dict(), path)
    official = segment_anything.sam_model_registry["vit_b"](checkpoint=str(path))
    _assert_same_weights(official, ours.state_dict())


def test_bf16_build_keeps_fp32_constants(vit_b_pth, vit_b_state):
    model = promptseg.build_sam("vit_b", checkpoint=vit_b_pth, dtype=torch.bfloat16)
    assert model.image_encoder.pos_embed.dtype == torch.bfloat16
    matrix = model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    assert matrix.dtype == torch.float32
    assert torch.equal(matrix, vit_b_state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"])
    assert model.pixel_mean.dtype == torch.float32


def test_vit_h_file_for_vit_b_names_the_model_type(tmp_path):
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in promptseg.build_sam("vit_h").state_dict().items()}
    # A stand-in with the real vit_h shapes of the keys that identify a model (a full file is 2.5 GB).
    partial = {k: torch.zeros(s) for k, s in shapes.items() if k.startswith("image_encoder.patch_embed") or ".blocks." in k and k.endswith("norm1.bias")}
    assert identify_model_type(partial) == "vit_h"
    path = tmp_path / "sam_vit_h_4b8939.pth"
    torch.save(partial, path)
    with pytest.raises(CheckpointError, match=r"holds a vit_h model .*model_type='vit_b' was requested"):
        promptseg.build_sam("vit_b", checkpoint=path)


def test_missing_and_unexpected_keys_are_listed(vit_b_state, tmp_path):
    state = dict(vit_b_state)
    del state["mask_decoder.iou_token.weight"]
    state["mask_decoder.extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        promptseg.build_sam("vit_b", checkpoint=path)
    message = str(error.value)
    assert "missing keys (1): mask_decoder.iou_token.weight" in message
    assert "unexpected keys (1): mask_decoder.extra_head.weight" in message


def test_wrong_shape_is_listed(vit_b_state, tmp_path):
    state = dict(vit_b_state)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"mask_decoder.iou_token.weight: checkpoint \(1, 128\), model \(1, 256\)"):
        promptseg.build_sam("vit_b", checkpoint=path)


def test_missing_file_says_so(tmp_path):
    missing = tmp_path / "nope" / "sam_vit_b_01ec64.pth"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        promptseg.build_sam("vit_b", checkpoint=missing)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"weights": object()}, handle, protocol=2)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        promptseg.build_sam("vit_b", checkpoint=path)
