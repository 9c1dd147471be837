"""``EnginePredictor`` (the code of ``TensorRTPredictor`` around its engines) on ONNX Runtime engines of
the exported graphs, against ``SamPredictor`` in PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptseg import SamPredictor
from promptseg.export import (
    EngineDecoder,
    EngineImageEncoder,
    EnginePredictor,
    OnnxRuntimeEngine,
    export_onnx_batched_decoder,
    export_onnx_encoder,
)
from promptseg.prompts.batch import tensor_prompt_batch
from promptseg.export.profiles import EngineLimits
from tests._support import relative_error

LOGIT_REL_ERR = 1e-4
MASK_PIXEL_FRACTION = 1e-4


@pytest.fixture(scope="module")
def predictors(tiny_pair, tmp_path_factory):
    """(SamPredictor, EnginePredictor on ONNX Runtime) of the same tiny model; small limits force chunking."""
    _, model = tiny_pair
    folder = tmp_path_factory.mktemp("engines")
    export_onnx_encoder(model, folder / "encoder.onnx")
    export_onnx_batched_decoder(model, folder / "decoder.onnx")
    limits = EngineLimits(max_images=1, opt_images=1, max_prompts=2, opt_prompts=1, max_points=6, opt_points=2)
    engine_predictor = EnginePredictor(
        model, OnnxRuntimeEngine(folder / "encoder.onnx"), OnnxRuntimeEngine(folder / "decoder.onnx"), limits
    )
    return SamPredictor(model), engine_predictor


def mixed_prompts(height: int, width: int) -> list[dict]:
    """Prompts of every shape: different point counts, boxes, box + points, mask only, points + mask."""
    generator = np.random.default_rng(0)
    mask = generator.standard_normal((1, 64, 64)).astype(np.float32)
    box = np.array([0.1 * width, 0.2 * height, 0.6 * width, 0.7 * height])
    clicks = np.array([[0.4 * width, 0.5 * height], [0.7 * width, 0.2 * height], [0.2 * width, 0.8 * height]])
    return [
        {"point_coords": clicks[:1], "point_labels": np.array([1])},
        {"box": box},
        {"point_coords": clicks, "point_labels": np.array([1, 0, 1]), "box": box},
        {"mask_input": mask},
        {"point_coords": clicks[:2], "point_labels": np.array([1, 1]), "mask_input": mask},
    ]


def assert_predictions_match(expected: tuple, actual: tuple, what: str) -> None:
    masks, scores, logits = expected
    engine_masks, engine_scores, engine_logits = actual
    assert engine_masks.shape == masks.shape and engine_masks.dtype == masks.dtype, what
    assert relative_error(engine_logits, logits) <= LOGIT_REL_ERR, what
    assert relative_error(engine_scores, scores) <= LOGIT_REL_ERR, what
    assert (engine_masks != masks).mean() <= MASK_PIXEL_FRACTION, what


def test_single_prompts_match_sam_predictor(predictors, images):
    reference, engine = predictors
    image = images["truck.jpg"]
    reference.set_image(image)
    engine.set_image(image)
    assert relative_error(engine.features, reference.features) <= LOGIT_REL_ERR
    for index, prompt in enumerate(mixed_prompts(*image.shape[:2])):
        for multimask in (True, False):
            expected = reference.predict(**prompt, multimask_output=multimask)
            assert_predictions_match(expected, engine.predict(**prompt, multimask_output=multimask), f"prompt {index}")


def test_prompts_of_mixed_shapes_in_chunks_match(predictors, images):
    reference, engine = predictors
    image = images["dog.jpg"]
    reference.set_image(image)
    engine.set_image(image)
    prompts = mixed_prompts(*image.shape[:2])
    assert_predictions_match(reference.predict_many(prompts), engine.predict_many(prompts), "predict_many")


def test_prompts_on_several_images_match(predictors, images):
    reference, engine = predictors
    pictures = [images["truck.jpg"], images["groceries.jpg"]]
    reference.set_images(pictures)
    engine.set_images(pictures, batch_size=2)
    prompts = [mixed_prompts(*pictures[0].shape[:2])[:3], mixed_prompts(*pictures[1].shape[:2])[1:]]
    for image, (expected, actual) in enumerate(zip(reference.predict_batch(prompts), engine.predict_batch(prompts))):
        assert_predictions_match(expected, actual, f"image {image}")


def test_predict_torch_with_boxes_matches(predictors, images):
    reference, engine = predictors
    image = images["truck.jpg"]
    reference.set_image(image)
    engine.set_image(image)
    boxes = torch.tensor([[10.0, 20.0, 200.0, 150.0], [50.0, 60.0, 120.0, 170.0], [0.0, 0.0, 255.0, 170.0]])
    expected = reference.predict_torch(None, None, boxes, multimask_output=False, return_logits=True)
    actual = engine.predict_torch(None, None, boxes, multimask_output=False, return_logits=True)
    assert actual[0].shape == expected[0].shape
    for what, engine_output, output in zip(("masks", "iou", "low-res"), actual, expected):
        assert relative_error(engine_output, output) <= LOGIT_REL_ERR, what


def test_too_many_tokens_for_the_engine_is_a_clear_error(predictors, images):
    _, engine = predictors
    engine.set_image(images["dog.jpg"])
    clicks = np.tile([[100.0, 100.0]], (6, 1))
    with pytest.raises(ValueError, match="a prompt has 7 tokens .* at most 6: rebuild with a larger EngineLimits"):
        engine.predict(clicks, np.ones(6))


def test_tensor_prompts_become_the_tokens_of_the_prompt_encoder(tiny_pair):
    _, model = tiny_pair
    generator = torch.Generator().manual_seed(0)
    coords = torch.rand(3, 2, 2, generator=generator) * 256
    labels = torch.tensor([[1, 0], [1, 1], [0, 1]])
    boxes = torch.tensor([[10.0, 20.0, 100.0, 120.0], [0.0, 0.0, 50.0, 50.0], [30.0, 40.0, 60.0, 80.0]])
    encoder = model.prompt_encoder
    for points, box in (((coords, labels), None), (None, boxes), ((coords, labels), boxes)):
        batch = tensor_prompt_batch(*(points or (None, None)), box, None)
        with torch.no_grad():
            expected, _ = encoder(points=points, boxes=box, masks=None)
            assert torch.equal(encoder.embed_tokens(batch.coords, batch.labels), expected)


def test_engines_run_behind_the_predictor_s_seams(predictors, tiny_pair):
    """No stand-in model: the predictor holds the caller's model, an EngineImageEncoder and an EngineDecoder."""
    _, engine = predictors
    model = tiny_pair[1]
    assert engine.model is model
    assert isinstance(engine.encoder, EngineImageEncoder) and isinstance(engine.decoder, EngineDecoder)
    assert repr(engine).startswith(
        "EnginePredictor(encoder=EngineImageEncoder(OnnxRuntimeEngine, img_size=256, device=cpu), "
        "decoder=EngineDecoder(backend='reference')"
    )
    image = torch.randint(0, 256, (3, 170, 256), generator=torch.Generator().manual_seed(3)).to(torch.uint8)
    assert torch.equal(engine.encoder.preprocess(image), model.preprocess(image))
    with pytest.raises(ValueError, match=r"EngineImageEncoder.encode takes preprocessed images \(B, 3, 256, 256\)"):
        engine.encoder.encode(torch.zeros(2, 3, 256, 128))
