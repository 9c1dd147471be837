"""promptseg vs the official segment_anything, same random weights, fp32, CPU, on real photos."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch

import promptseg
import promptseg.utils.transforms
from tests._support import IMAGE_NAMES, OFFICIAL_MISSING, relative_error
from tests.parity import EMBEDDING_REL_ERR, assert_prediction_matches, prompt_cases

segment_anything = pytest.importorskip("segment_anything", reason=OFFICIAL_MISSING)


@pytest.fixture(scope="module")
def embedded(vit_b_pair, images, vit_b_encoder_memo):
    """(official, promptseg) predictors holding one image, cached per (image, format). A BGR copy
    reaches each encoder as the identical input of its RGB photo, whose forward the memo reuses."""
    official_model, our_model = vit_b_pair

    @lru_cache(maxsize=None)
    def predictors(name: str, image_format: str):
        image = images[name] if image_format == "RGB" else np.ascontiguousarray(images[name][..., ::-1])
        official = segment_anything.SamPredictor(official_model)
        ours = promptseg.SamPredictor(our_model)
        with vit_b_encoder_memo.active(official_model, our_model):
            official.set_image(image, image_format)
            ours.set_image(image, image_format)
        return official, ours

    return predictors


@pytest.mark.parametrize("image_format", ["RGB", "BGR"])
@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_vit_b_end_to_end(embedded, images, name, image_format):
    official, ours = embedded(name, image_format)
    assert ours.original_size == official.original_size
    assert ours.input_size == official.input_size
    assert relative_error(ours.get_image_embedding(), official.get_image_embedding()) <= EMBEDDING_REL_ERR

    height, width = images[name].shape[:2]
    for case, prompt in prompt_cases(height, width).items():
        for multimask in (True, False):
            expected = official.predict(**prompt, multimask_output=multimask)
            actual = ours.predict(**prompt, multimask_output=multimask)
            assert_prediction_matches(expected, actual, f"{name} {image_format} {case} multimask={multimask}")


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_second_round_with_mask_input(embedded, images, name):
    official, ours = embedded(name, "RGB")
    height, width = images[name].shape[:2]
    first = prompt_cases(height, width)["one point"]
    _, scores, logits = official.predict(**first, multimask_output=True)
    refine = {
        "point_coords": np.array([[0.45 * width, 0.5 * height], [0.1 * width, 0.1 * height]]),
        "point_labels": np.array([1, 0]),
        "mask_input": logits[np.argmax(scores)][None],
    }
    for multimask in (True, False):
        expected = official.predict(**refine, multimask_output=multimask)
        actual = ours.predict(**refine, multimask_output=multimask)
        assert_prediction_matches(expected, actual, f"{name} second round multimask={multimask}")


def test_return_logits(embedded, images):
    official, ours = embedded("truck.jpg", "RGB")
    height, width = images["truck.jpg"].shape[:2]
    prompt = prompt_cases(height, width)["box and points"]
    expected = official.predict(**prompt, return_logits=True)
    actual = ours.predict(**prompt, return_logits=True)
    assert actual[0].dtype == np.float32
    assert_prediction_matches(expected, actual, "return_logits")


def test_predict_torch_matches_official(embedded):
    official, ours = embedded("dog.jpg", "RGB")
    generator = torch.Generator().manual_seed(0)
    coords = torch.rand(5, 3, 2, generator=generator) * 1000
    labels = torch.randint(0, 2, (5, 3), generator=generator)
    boxes = torch.tensor([[100.0, 120.0, 600.0, 500.0]]).repeat(5, 1)
    for kwargs in ({"boxes": None}, {"boxes": boxes}):
        expected = official.predict_torch(coords, labels, multimask_output=True, **kwargs)
        actual = ours.predict_torch(coords, labels, multimask_output=True, **kwargs)
        assert_prediction_matches(
            tuple(t.numpy() for t in expected), tuple(t.numpy() for t in actual), f"predict_torch {kwargs.keys()}"
        )


def test_sam_forward_matches_official(vit_b_pair, images):
    official_model, our_model = vit_b_pair
    image = torch.as_tensor(images["dog.jpg"]).permute(2, 0, 1)
    size = promptseg.utils.transforms.ResizeLongestSide.get_preprocess_shape(*image.shape[-2:], 1024)
    resized = torch.nn.functional.interpolate(image[None].float(), size=size, mode="bilinear")[0]
    record = {
        "image": resized,
        "original_size": image.shape[-2:],
        "point_coords": torch.tensor([[[400.0, 300.0], [100.0, 50.0]]]),
        "point_labels": torch.tensor([[1, 0]]),
        "boxes": torch.tensor([[200.0, 150.0, 700.0, 600.0]]),
    }
    expected = official_model([record], multimask_output=True)[0]
    actual = our_model([record], multimask_output=True)[0]
    assert_prediction_matches(
        tuple(expected[k].numpy() for k in ("masks", "iou_predictions", "low_res_logits")),
        tuple(actual[k].numpy() for k in ("masks", "iou_predictions", "low_res_logits")),
        "Sam.forward",
    )
