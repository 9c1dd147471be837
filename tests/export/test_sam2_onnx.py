"""ONNX export of SAM 2.1 (``promptseg.export.sam2_onnx``), run by ONNX Runtime behind the seams
(``promptseg.encoders.Sam2EngineImageEncoder``, ``promptseg.decoders.Sam2EngineDecoder``) against the
same model in PyTorch: Hiera-t at a 256 input with random weights, on a small crop of a photo, float32
on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptseg import SamPredictor
from tests._support import mixed_prompts, relative_error

pytest.importorskip("onnxruntime")

FEATURE_REL_ERR = 1e-4
LOGIT_REL_ERR = 1e-4
MASK_PIXEL_FRACTION = 1e-4


@pytest.fixture(scope="module")
def predictors(sam2_small, tmp_path_factory, images):
    """(SamPredictor in PyTorch, SamPredictor on ONNX Runtime engines) of one SAM 2 model, image set."""
    from promptseg.decoders import Sam2EngineDecoder
    from promptseg.encoders import OnnxRuntimeEngine, Sam2EngineImageEncoder
    from promptseg.export import export_sam2_onnx_decoder, export_sam2_onnx_encoder
    from promptseg.export.profiles import EngineLimits

    folder = tmp_path_factory.mktemp("sam2_onnx")
    export_sam2_onnx_encoder(sam2_small, folder / "encoder.onnx")
    export_sam2_onnx_decoder(sam2_small, folder / "decoder.onnx")
    encoder = Sam2EngineImageEncoder.for_model(OnnxRuntimeEngine(folder / "encoder.onnx"), sam2_small, max_images=1)
    limits = EngineLimits.up_to(max_images=1, max_prompts=3, max_points=8)
    decoder = Sam2EngineDecoder(OnnxRuntimeEngine(folder / "decoder.onnx"), sam2_small, limits)
    picture = images["dog.jpg"][100:340, 150:470]
    torch_predictor, engine_predictor = SamPredictor(sam2_small), SamPredictor(sam2_small, encoder=encoder, decoder=decoder)
    torch_predictor.set_image(picture)
    engine_predictor.set_image(picture)
    return torch_predictor, engine_predictor


def test_encoder_graph_equals_torch(predictors):
    torch_predictor, engine_predictor = predictors
    expected, actual = torch_predictor.features, engine_predictor.features
    assert relative_error(actual.embedding, expected.embedding) < FEATURE_REL_ERR
    for ours, theirs in zip(actual.high_res, expected.high_res, strict=True):
        assert relative_error(ours, theirs) < FEATURE_REL_ERR


@pytest.mark.parametrize("multimask_output", [True, False])
def test_decoder_graph_equals_torch(predictors, multimask_output):
    """Points, boxes, both, and a mask input; chunked by the engine's limits (3 prompts per call)."""
    torch_predictor, engine_predictor = predictors
    prompts = mixed_prompts(240, 320, 7, seed=5, mask_size=64)
    expected = torch_predictor.predict_many(prompts, multimask_output=multimask_output)
    actual = engine_predictor.predict_many(prompts, multimask_output=multimask_output)
    masks, scores, low_res = actual
    assert masks.shape == expected[0].shape == (7, 3 if multimask_output else 1, 240, 320)
    np.testing.assert_allclose(scores, expected[1], rtol=0, atol=1e-4)
    assert relative_error(low_res, expected[2]) < LOGIT_REL_ERR
    assert np.mean(masks != expected[0]) < MASK_PIXEL_FRACTION
