"""Text prompts in the model and the API: shapes, batching, checkpoints, errors.

A random-weight stand-in concept encoder (a subclass of ``ConceptEncoder``) and a random
``TextPromptEncoder`` drive the plumbing here; the trained bundled text weights are measured in
tests/text/test_measured.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptseg.build import build_sam
from promptseg.bundled import build_bundled_sam
from promptseg.checkpoint import read_state_dict
from promptseg.data.synthetic import generate_scene
from promptseg.errors import CheckpointError
from promptseg.predictor import SamPredictor
from promptseg.text import (
    TEXT_PREFIX,
    ConceptEncoder,
    TextPromptEncoder,
    TextPrompting,
    load_text_model,
    read_text_checkpoint,
    save_text_checkpoint,
)


class StandInConcepts(ConceptEncoder):
    """Characters -> embedding bag (text); mean colour -> linear (images). Random weights."""

    name = "stand-in"

    def __init__(self, dim: int = 24, context_length: int = 32) -> None:
        super().__init__()
        self.dim, self.context_length = dim, context_length
        generator = torch.Generator().manual_seed(0)
        self.chars = torch.nn.Parameter(torch.randn(128, dim, generator=generator))
        self.pixels = torch.nn.Parameter(torch.randn(3, dim, generator=generator))

    def tokenize(self, texts):
        tokens = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            codes = [min(ord(c), 127) for c in text][: self.context_length]
            tokens[row, : len(codes)] = torch.tensor(codes)
        return tokens, [len(text) > self.context_length for text in texts]

    def text_features(self, tokens):
        return self.chars[tokens].sum(1)

    def preprocess(self, crops):
        return torch.stack([torch.from_numpy(c.reshape(-1, 3).mean(0)).float() / 255 for c in crops])

    def image_features(self, pixels):
        return pixels @ self.pixels


POINT = {"point_coords": np.array([[60.0, 70.0]]), "point_labels": np.array([1])}


@pytest.fixture(scope="module")
def sam():
    return build_bundled_sam()


@pytest.fixture(scope="module")
def text(sam):
    torch.manual_seed(0)
    return TextPrompting(StandInConcepts(), TextPromptEncoder(24, sam.prompt_encoder.embed_dim))


@pytest.fixture(scope="module")
def predictor(sam, text):
    predictor = SamPredictor(sam, text=text)
    predictor.set_image(generate_scene(5).image)
    return predictor


@pytest.mark.parametrize(
    "extra",
    [{}, POINT, {"box": np.array([20, 30, 120, 140])}, {"mask_input": np.zeros((1, 64, 64), np.float32)}],
    ids=["text", "text+point", "text+box", "text+mask"],
)
def test_predict_text_shapes(predictor, extra):
    if "mask_input" in extra:
        extra = {"mask_input": np.zeros((1,) + (predictor._mask_size,) * 2, np.float32)}
    masks, scores, logits = predictor.predict(text="red ellipse", **extra)
    assert masks.shape == (3, 256, 256) and masks.dtype == np.bool_
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert logits.shape == (3, predictor._mask_size, predictor._mask_size)
    single = predictor.predict(text="red ellipse", multimask_output=False, **extra)
    assert single[0].shape == (1, 256, 256)


def test_text_changes_the_prediction(predictor):
    with_text = predictor.predict(text="blue star", multimask_output=False, **POINT)[2]
    other_text = predictor.predict(text="green ring", multimask_output=False, **POINT)[2]
    alone = predictor.predict(multimask_output=False, **POINT)[2]
    assert not np.allclose(with_text, alone) and not np.allclose(with_text, other_text)


def test_predict_many_equals_one_at_a_time(predictor):
    prompts = [
        {"text": "red ellipse"},
        POINT,
        {"text": "blue star", **POINT},
        {"text": "red ellipse", "box": np.array([10, 10, 100, 90])},
        {"point_coords": np.array([[10.0, 10.0], [90, 80]]), "point_labels": np.array([1, 0])},
        {"text": "plain green ring", "mask_input": np.zeros((1, predictor._mask_size, predictor._mask_size), np.float32)},
    ]
    masks, scores, logits = predictor.predict_many(prompts)
    for index, prompt in enumerate(prompts):
        one = predictor.predict(**prompt)
        np.testing.assert_allclose(logits[index], one[2], atol=2e-4)
        np.testing.assert_allclose(scores[index], one[1], atol=2e-5)
        assert (masks[index] != one[0]).mean() < 1e-3


def test_predict_batch_text(sam, text):
    predictor = SamPredictor(sam, text=text, prompt_batch_size=2)
    scenes = [generate_scene(5).image, generate_scene(6).image[:200]]
    predictor.set_images(scenes)
    per_image = [[{"text": "red ellipse"}, {"text": "blue star", **POINT}], [POINT, {"text": "plain white square"}]]
    results = predictor.predict_batch(per_image, multimask_output=False)
    single = SamPredictor(sam, text=text)
    for image, prompts, (masks, scores, logits) in zip(scenes, per_image, results):
        single.set_image(image)
        assert masks.shape == (2, 1) + image.shape[:2]
        for index, prompt in enumerate(prompts):
            np.testing.assert_allclose(logits[index], single.predict(multimask_output=False, **prompt)[2], atol=2e-4)


def test_prompts_without_text_are_unchanged(sam, predictor):
    plain = SamPredictor(sam)
    plain.set_image(generate_scene(5).image)
    for prompt in (POINT, {"box": np.array([20, 30, 120, 140])}):
        np.testing.assert_array_equal(plain.predict(**prompt)[2], predictor.predict(**prompt)[2])


def test_official_checkpoint_loads_strictly_and_text_lives_outside(tmp_path, sam, text):
    official = build_sam("vit_tiny")
    official.load_state_dict(sam.state_dict(), strict=True)
    assert not any(key.startswith(TEXT_PREFIX) for key in sam.state_dict())
    # A whole-model text checkpoint still loads with build_sam (text keys left out) ...
    path = save_text_checkpoint(tmp_path / "whole.safetensors", text.prompt_encoder, sam, concept_encoder="stand-in")
    rebuilt = build_sam("vit_tiny", checkpoint=path)
    for key, value in sam.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value)
    # ... and into a plain Sam with strict=True once its text keys are split off.
    stored = read_text_checkpoint(path)
    build_sam("vit_tiny").load_state_dict(stored.sam_state, strict=True)


def test_checkpoint_prefix_round_trip(tmp_path, sam, text):
    path = save_text_checkpoint(
        tmp_path / "text.safetensors", text.prompt_encoder, sam, ["mask_decoder"], concept_encoder="stand-in"
    )
    keys = read_state_dict(path).keys()
    assert {key.split(".", 1)[0] + "." for key in keys} == {TEXT_PREFIX, "mask_decoder."}
    stored = read_text_checkpoint(path)
    assert stored.config == text.prompt_encoder.config() and stored.concept_encoder == "stand-in"
    assert not stored.has_whole_model
    for key, value in text.prompt_encoder.state_dict().items():
        torch.testing.assert_close(stored.text_state[key], value)
    loaded_sam, loaded = load_text_model(path, concept_encoder=text.concept_encoder)
    phrases = ["red ellipse", "a small blue star"]
    torch.testing.assert_close(
        loaded.tokens(phrases, torch.device("cpu"), torch.float32), text.tokens(phrases, torch.device("cpu"), torch.float32)
    )
    whole = save_text_checkpoint(tmp_path / "whole.safetensors", text.prompt_encoder, sam)
    assert read_text_checkpoint(whole).has_whole_model
    assert load_text_model(whole, concept_encoder=text.concept_encoder)[0].image_encoder.img_size == 256


def test_missing_text_weights_is_a_clear_error(tmp_path, sam):
    predictor = SamPredictor(sam)
    predictor.set_image(generate_scene(5).image)
    with pytest.raises(ValueError, match="no text prompt weights.*load_text_model.*promptseg train --text"):
        predictor.predict(text="red ellipse")
    with pytest.raises(ValueError, match="no text prompt weights"):
        predictor.predict_many([POINT, {"text": "red ellipse"}])
    official = tmp_path / "sam.pth"
    torch.save(sam.state_dict(), official)
    with pytest.raises(CheckpointError, match="no text prompt weights.*promptseg train --text"):
        read_text_checkpoint(official)
    with pytest.raises(FileNotFoundError):
        load_text_model(tmp_path / "absent.safetensors", concept_encoder=StandInConcepts())


@pytest.mark.parametrize(
    "bad, error, message",
    [
        ("", ValueError, "empty"),
        ("   ", ValueError, "empty"),
        (3, TypeError, "string"),
        (["red ellipse", "blue star"], TypeError, "one string per prompt"),
        (("red",), TypeError, "one string per prompt"),
    ],
)
def test_bad_text(predictor, bad, error, message):
    with pytest.raises(error, match=message):
        predictor.predict(text=bad)
    with pytest.raises(error, match=message):
        predictor.predict_many([{"text": bad}])


def test_string_where_a_list_is_expected(predictor):
    with pytest.raises(TypeError, match="sequence of prompts"):
        predictor.predict_many("red ellipse")
    with pytest.raises(TypeError, match=r"\{'text': 'red ellipse'\}"):
        predictor.predict_many(["red ellipse"])
    with pytest.raises(TypeError, match="list of strings"):
        predictor.text.concept_encoder.encode_text("red ellipse")


def test_long_text_is_truncated_with_a_warning(predictor):
    long = "a very long description of a plain red ellipse " * 2
    with pytest.warns(UserWarning, match="truncated"):
        masks = predictor.predict(text=long)[0]
    assert masks.shape == (3, 256, 256)


def test_mismatched_text_weights_are_refused(sam):
    with pytest.raises(ValueError, match="24-dim embeddings.*takes 32"):
        TextPrompting(StandInConcepts(24), TextPromptEncoder(32, 128))
    wrong_width = TextPrompting(StandInConcepts(24), TextPromptEncoder(24, 256))
    with pytest.raises(ValueError, match="256-wide tokens.*128 wide"):
        SamPredictor(sam, text=wrong_width)
    with pytest.raises(TypeError, match="TextPrompting"):
        SamPredictor(sam, text="bundled")


def test_text_prompt_encoder_shapes():
    encoder = TextPromptEncoder(24, 128, num_tokens=3)
    tokens = encoder(torch.nn.functional.normalize(torch.randn(5, 24), dim=1))
    assert tokens.shape == (5, 3, 128) and tokens.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(N, 24\)"):
        encoder(torch.randn(5, 12))


def test_fused_decoder_takes_text_tokens(sam, text, predictor):
    """The fused decoder (its PyTorch references on the CPU) decodes text tokens as the module decoder does."""
    from promptseg.decoders import ModuleDecoder
    from promptseg.decoders.fused import FusedDecoder
    from promptseg.prompts.batch import pack_prompts
    from promptseg.prompts.validate import check_prompt

    prompts = [check_prompt(text="red ellipse"), check_prompt(**POINT), check_prompt(**POINT, text="blue star")]
    tokens = text.tokens(["red ellipse", "blue star"], torch.device("cpu"), torch.float32)
    batch = pack_prompts(prompts, [(256, 256)] * 3, predictor.transform, torch.device("cpu"), [tokens[0], None, tokens[1]])
    assert batch.extra_tokens.shape == (3, tokens.shape[1], tokens.shape[2]) and batch.token_mask.shape[1] == 2 + tokens.shape[1]
    with torch.no_grad():
        module = ModuleDecoder(sam).decode(predictor.features, batch, [0, 0, 0], False)
        fused = FusedDecoder(sam).decode(predictor.features, batch, [0, 0, 0], False)
    for expected, got in zip(module, fused):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
