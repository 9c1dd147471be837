"""SAM 2 models on promptseg's predictor (CPU): SamPredictor with a SAM 2 model against
SAM2ImagePredictor, and SAM2ImagePredictor's batched additions (predict_many, predict_many_batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptseg import SamPredictor
from promptseg.encoders import Sam2ImageEncoder, default_encoder
from promptseg.prompts.frames import SquareResize
from promptseg.sam2 import SAM2ImagePredictor
from tests._support import mixed_prompts


@pytest.fixture(scope="module")
def embedded(sam2_small, images):
    """A SAM2ImagePredictor and a SamPredictor on the same SAM 2 model, both with dog.jpg set."""
    official_api = SAM2ImagePredictor(sam2_small)
    official_api.set_image(images["dog.jpg"])
    ours = SamPredictor(sam2_small)
    ours.set_image(images["dog.jpg"])
    return official_api, ours


def test_sam_predictor_takes_a_sam2_model(sam2_small, embedded):
    sam2_predictor, predictor = embedded
    assert isinstance(predictor.encoder, Sam2ImageEncoder) and isinstance(default_encoder(sam2_small), Sam2ImageEncoder)
    assert isinstance(predictor.transform, SquareResize) and predictor.input_size == (256, 256)
    assert torch.equal(predictor.get_image_embedding(), sam2_predictor.get_image_embedding())
    box = np.array([100.0, 50.0, 600.0, 400.0])
    points, labels = np.array([[300.0, 200.0], [500.0, 100.0]]), np.array([1, 0])
    mask = sam2_predictor.predict(point_coords=points[:1], point_labels=labels[:1])[2][:1]
    cases = [
        {"point_coords": points[:1], "point_labels": labels[:1]},
        {"point_coords": points, "point_labels": labels},
        {"box": box},
        {"point_coords": points, "point_labels": labels, "box": box},
        {"point_coords": points[:1], "point_labels": labels[:1], "mask_input": mask},
    ]
    for case in cases:
        for multimask in (True, False):
            masks, scores, low_res = predictor.predict(**case, multimask_output=multimask)
            expected = sam2_predictor.predict(**case, multimask_output=multimask)
            assert masks.dtype == np.bool_ and np.array_equal(masks, expected[0].astype(bool)), case
            np.testing.assert_allclose(scores, expected[1], rtol=0, atol=1e-6)
            np.testing.assert_allclose(np.clip(low_res, -32, 32), expected[2], rtol=0, atol=1e-5)


def test_predict_many_equals_predict_per_prompt(embedded):
    sam2_predictor, predictor = embedded
    prompts = mixed_prompts(534, 800, 10, seed=3, mask_size=64)
    masks, scores, low_res = sam2_predictor.predict_many(prompts, multimask_output=False)
    assert masks.shape == (10, 1, 534, 800) and masks.dtype == np.float32 and low_res.shape == (10, 1, 64, 64)
    assert np.abs(low_res).max() <= 32.0
    for index, prompt in enumerate(prompts):
        expected = sam2_predictor.predict(**prompt, multimask_output=False)
        assert np.mean(masks[index] != expected[0]) < 1e-4, index
        np.testing.assert_allclose(scores[index], expected[1], rtol=0, atol=1e-5)
        np.testing.assert_allclose(low_res[index], expected[2], rtol=0, atol=1e-4 * np.abs(expected[2]).max())
    ours = predictor.predict_many(prompts, multimask_output=False)
    np.testing.assert_allclose(ours[1], scores, rtol=0, atol=1e-6)
    assert np.array_equal(ours[0], masks.astype(bool))
    with pytest.raises(TypeError, match="sequence of prompts"):
        sam2_predictor.predict_many(prompts[0])
    with pytest.raises(ValueError, match="text"):
        sam2_predictor.predict_many([{"text": "a dog"}])


def test_predict_many_batch_over_images(sam2_small, images):
    """Prompts per image of set_image_batch, decoded together: as predict on each image, prompt by prompt."""
    predictor = SAM2ImagePredictor(sam2_small, prompt_batch_size=3)
    pictures = [images["dog.jpg"], images["truck.jpg"][:300, :500]]
    predictor.set_image_batch(pictures)
    prompts = [mixed_prompts(534, 800, 3, seed=1, mask_size=64), mixed_prompts(300, 500, 4, seed=2, mask_size=64)]
    results = predictor.predict_many_batch(prompts, multimask_output=True)
    assert [r[0].shape for r in results] == [(3, 3, 534, 800), (4, 3, 300, 500)]
    for image, (_, scores, low_res) in enumerate(results):
        for index, prompt in enumerate(prompts[image]):
            arguments = {f"{key}_batch": [value] * 2 for key, value in prompt.items()}
            expected = predictor.predict_batch(**arguments, multimask_output=True)
            np.testing.assert_allclose(scores[index], expected[1][image], rtol=0, atol=1e-5)
            np.testing.assert_allclose(low_res[index], expected[2][image], rtol=0, atol=1e-4 * np.abs(low_res).max())
    with pytest.raises(ValueError, match="one sequence of prompts per image"):
        predictor.predict_many_batch(prompts[:1])


def test_predict_under_inference_mode_as_the_official_readme_does(sam2_small, images):
    """The official README wraps set_image and predict in ``torch.inference_mode()``: the CPU's fused
    decoder then builds its image table per call (inference tensors have no version counter to check
    a cache against) and gives the results of ``no_grad``."""
    predictor = SAM2ImagePredictor(sam2_small)
    point = {"point_coords": np.array([[120.0, 90.0]]), "point_labels": np.array([1])}
    predictor.set_image(images["dog.jpg"])
    expected = predictor.predict(**point)
    with torch.inference_mode():
        predictor.set_image(images["dog.jpg"])
        got = predictor.predict(**point)
    for ours, theirs in zip(got, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
