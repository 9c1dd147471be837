"""The batched API (many prompts per call, many images per call) equals one call per prompt / image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import promptseg
from tests._support import IMAGE_NAMES
from tests.parity import assert_prediction_matches


def _mixed_prompts(height: int, width: int, mask_input: np.ndarray) -> list[dict]:
    rng = np.random.default_rng(7)

    def points(count: int) -> dict:
        coords = rng.uniform([0, 0], [width, height], size=(count, 2))
        return {"point_coords": coords, "point_labels": rng.integers(0, 2, size=count)}

    box = np.array([0.1 * width, 0.2 * height, 0.6 * width, 0.9 * height])
    return [
        points(1),
        points(4),
        {"box": box},
        {**points(2), "box": box},
        points(7),
        {**points(3), "mask_input": mask_input},
        {"box": box, "mask_input": mask_input},
        {"mask_input": mask_input},
        {},
    ]


@pytest.fixture(scope="module")
def predictor(tiny_pair, images):
    predictor = promptseg.SamPredictor(tiny_pair[1], prompt_batch_size=4)
    predictor.set_image(images["truck.jpg"])
    return predictor


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("return_logits", [False, True])
def test_predict_many_equals_one_at_a_time(predictor, images, multimask, return_logits):
    height, width = images["truck.jpg"].shape[:2]
    _, _, logits = predictor.predict(point_coords=np.array([[900.0, 600.0]]), point_labels=np.array([1]))
    prompts = _mixed_prompts(height, width, logits[:1])
    masks, scores, low_res = predictor.predict_many(prompts, multimask_output=multimask, return_logits=return_logits)
    channels = 3 if multimask else 1
    assert masks.shape == (len(prompts), channels, height, width)
    assert scores.shape == (len(prompts), channels)
    assert low_res.shape == (len(prompts), channels, 64, 64)
    for index, prompt in enumerate(prompts):
        single = predictor.predict(**prompt, multimask_output=multimask, return_logits=return_logits)
        assert_prediction_matches(single, (masks[index], scores[index], low_res[index]), f"prompt {index}")


def test_predict_many_accepts_prompt_objects_and_empty_list(predictor):
    from promptseg.prompts.validate import Prompt

    masks, scores, low_res = predictor.predict_many([Prompt(box=np.array([10.0, 10.0, 200.0, 100.0]))])
    assert masks.shape[:2] == (1, 3)
    masks, scores, low_res = predictor.predict_many([])
    assert masks.shape == (0, 3, 1200, 1800) and scores.shape == (0, 3) and low_res.shape == (0, 3, 64, 64)


def test_set_images_and_predict_batch_equal_one_image_at_a_time(tiny_pair, images):
    model = tiny_pair[1]
    batched = promptseg.SamPredictor(model, prompt_batch_size=5)
    image_list = [images[name] for name in IMAGE_NAMES]
    batched.set_images(image_list, batch_size=2)
    assert batched.features.shape == (3, 64, 16, 16)
    assert batched.original_sizes == [image.shape[:2] for image in image_list]
    with pytest.raises(ValueError, match="use predict_batch"):
        batched.predict(box=np.array([0.0, 0.0, 10.0, 10.0]))

    prompts_per_image = []
    for image in image_list:
        height, width = image.shape[:2]
        prompts_per_image.append(_mixed_prompts(height, width, np.zeros((1, 64, 64), np.float32))[:5])
    prompts_per_image[1] = prompts_per_image[1][:2]
    results = batched.predict_batch(prompts_per_image)

    single = promptseg.SamPredictor(model)
    for index, (image, prompts) in enumerate(zip(image_list, prompts_per_image)):
        single.set_image(image)
        assert torch.allclose(single.features[0], batched.features[index], rtol=1e-4, atol=1e-5)
        masks, scores, low_res = results[index]
        assert masks.shape == (len(prompts), 3, *image.shape[:2])
        for prompt_index, prompt in enumerate(prompts):
            expected = single.predict(**prompt)
            actual = (masks[prompt_index], scores[prompt_index], low_res[prompt_index])
            assert_prediction_matches(expected, actual, f"image {index} prompt {prompt_index}")


def test_set_images_with_one_image_behaves_like_set_image(tiny_pair, images):
    predictor = promptseg.SamPredictor(tiny_pair[1])
    predictor.set_images([images["dog.jpg"]], image_format="BGR")
    assert predictor.original_size == images["dog.jpg"].shape[:2]
    masks, scores, _ = predictor.predict(box=np.array([10.0, 10.0, 300.0, 200.0]))
    assert masks.shape == (3, *images["dog.jpg"].shape[:2])


def test_prompt_batch_size_defaults_by_device_and_rejects_nonsense(tiny_pair):
    """None takes the device's default (on the CPU, as many prompts as keep their full-size masks within
    a few megabytes: one at a time on a 2-megapixel photo); anything but an int >= 1 is refused with what
    came."""
    from promptseg.predictor import CPU_BATCH_BYTES, cpu_prompt_batch

    assert promptseg.SamPredictor(tiny_pair[1]).prompt_batch_size is None
    assert cpu_prompt_batch(1800 * 1200) == 1 and cpu_prompt_batch(256 * 256) == CPU_BATCH_BYTES // (12 * 256 * 256) == 10
    assert cpu_prompt_batch(16 * 16, limit=64) == 64 and cpu_prompt_batch(0) >= 1
    assert promptseg.SamPredictor(tiny_pair[1], prompt_batch_size=16).prompt_batch_size == 16
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(ValueError, match=f"prompt_batch_size must be an int >= 1 or None, got {bad!r}"):
            promptseg.SamPredictor(tiny_pair[1], prompt_batch_size=bad)
