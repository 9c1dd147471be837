"""Every bad input gets a clear TypeError/ValueError naming what was expected, and inputs are never modified."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import promptseg
from promptseg import ImageNotSetError, UnknownModelTypeError


@pytest.fixture(scope="module")
def predictor(tiny_pair, images):
    _, model = tiny_pair
    predictor = promptseg.SamPredictor(model)
    predictor.set_image(images["dog.jpg"])
    return predictor


@pytest.fixture(scope="module")
def fresh_predictor(tiny_pair):
    return promptseg.SamPredictor(tiny_pair[1])


@pytest.mark.parametrize(
    "image, error, pattern",
    [
        (np.zeros((32, 32), np.uint8), ValueError, r"shape \(H, W, 3\), got \(32, 32\)"),
        (np.zeros((32, 32, 4), np.uint8), ValueError, r"shape \(H, W, 3\), got \(32, 32, 4\)"),
        (np.zeros((3, 32, 32), np.uint8), ValueError, r"shape \(H, W, 3\), got \(3, 32, 32\)"),
        (np.zeros((32, 32, 3), np.float32), TypeError, "dtype uint8.*got float32"),
        (np.zeros((0, 32, 3), np.uint8), ValueError, "must not be empty"),
        ([[[0, 0, 0]]], TypeError, "numpy array.*got list"),
        (torch.zeros(32, 32, 3, dtype=torch.uint8), TypeError, "numpy array.*got Tensor"),
    ],
)
def test_bad_images(fresh_predictor, image, error, pattern):
    with pytest.raises(error, match=pattern):
        fresh_predictor.set_image(image)


def test_unknown_image_format(fresh_predictor, images):
    with pytest.raises(ValueError, match=r"image_format must be one of \['RGB', 'BGR'\], got 'RGBA'"):
        fresh_predictor.set_image(images["dog.jpg"], image_format="RGBA")


def test_predict_before_set_image(tiny_pair):
    predictor = promptseg.SamPredictor(tiny_pair[1])
    for call in (
        lambda: predictor.predict(np.array([[1.0, 2.0]]), np.array([1])),
        lambda: predictor.predict_torch(None, None),
        lambda: predictor.predict_many([{"box": [0, 0, 5, 5]}]),
        lambda: predictor.get_image_embedding(),
    ):
        with pytest.raises(ImageNotSetError, match=r"set_image"):
            call()
    # Catchable both as the official RuntimeError and as ValueError.
    with pytest.raises(RuntimeError):
        predictor.predict(box=np.array([0, 0, 5, 5]))
    with pytest.raises(ValueError):
        predictor.predict(box=np.array([0, 0, 5, 5]))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"point_coords": np.array([[10.0, 10.0]])}, ValueError, "without point_labels"),
        ({"point_labels": np.array([1])}, ValueError, "point_labels was given without point_coords"),
        ({"point_coords": np.array([[1.0, 2.0], [3.0, 4.0]]), "point_labels": np.array([1])}, ValueError, "matching the 2 points"),
        ({"point_coords": np.array([1.0, 2.0]), "point_labels": np.array([1])}, ValueError, r"shape \(N, 2\)"),
        ({"point_coords": np.zeros((0, 2)), "point_labels": np.zeros(0)}, ValueError, r"N >= 1"),
        ({"point_coords": np.array([[1.0, 2.0]]), "point_labels": np.array([2])}, ValueError, r"0 \(background\) or 1 \(foreground\), got \[2\]"),
        ({"point_coords": np.array([[1.0, 2.0]]), "point_labels": np.array([-1])}, ValueError, r"got \[-1\]"),
        ({"point_coords": np.array([[np.nan, 2.0]]), "point_labels": np.array([1])}, ValueError, "finite"),
        ({"point_coords": np.array([[np.inf, 2.0]]), "point_labels": np.array([1])}, ValueError, "finite"),
        ({"point_coords": np.array([["a", "b"]]), "point_labels": np.array([1])}, TypeError, "numbers"),
        ({"box": np.array([1.0, 2.0, 3.0])}, ValueError, "4 numbers"),
        ({"box": np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])}, ValueError, "4 numbers"),
        ({"box": np.array([30.0, 2.0, 10.0, 40.0])}, ValueError, "x0 <= x1"),
        ({"box": np.array([1.0, 50.0, 10.0, 40.0])}, ValueError, "y0 <= y1"),
        ({"box": np.array([1.0, np.nan, 10.0, 40.0])}, ValueError, "finite"),
        ({"mask_input": np.zeros((256, 256))}, ValueError, r"\(1, 64, 64\).*got \(256, 256\)"),
        ({"mask_input": np.zeros((1, 32, 32))}, ValueError, r"\(1, 64, 64\).*got \(1, 32, 32\)"),
    ],
)
def test_bad_prompts(predictor, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        predictor.predict(**kwargs)
    with pytest.raises(error, match=pattern):
        predictor.predict_many([kwargs])


def test_bad_prompt_tensors(predictor):
    coords = torch.ones(2, 3, 2)
    with pytest.raises(ValueError, match=r"point_labels must have shape \(2, 3\)"):
        predictor.predict_torch(coords, torch.ones(2, 4, dtype=torch.int))
    with pytest.raises(ValueError, match="must be in"):
        predictor.predict_torch(coords, torch.full((2, 3), 7))
    with pytest.raises(ValueError, match="finite"):
        predictor.predict_torch(torch.full((2, 3, 2), float("nan")), torch.ones(2, 3, dtype=torch.int))
    with pytest.raises(ValueError, match="batch sizes differ"):
        predictor.predict_torch(coords, torch.ones(2, 3, dtype=torch.int), boxes=torch.tensor([[0.0, 0.0, 5.0, 5.0]]))
    with pytest.raises(ValueError, match=r"mask_input must have shape \(B, 1, 64, 64\)"):
        predictor.predict_torch(None, None, mask_input=torch.zeros(1, 64, 64))


def test_bad_batched_calls(predictor):
    with pytest.raises(ValueError, match="unknown prompt keys"):
        predictor.predict_many([{"points": [[1, 2]]}])
    with pytest.raises(TypeError, match="each prompt must be a dict"):
        predictor.predict_many([[1, 2]])
    with pytest.raises(ValueError, match="one sequence of prompts per image"):
        predictor.predict_batch([[], []])
    with pytest.raises(TypeError, match="sequence of prompts, got one prompt"):
        predictor.predict_batch([{"box": [0, 0, 5, 5]}])


def test_unknown_model_type():
    with pytest.raises(UnknownModelTypeError, match=r"unknown model type 'vit_x'; expected one of"):
        promptseg.build_sam("vit_x")
    with pytest.raises(KeyError, match="vit_x"):
        promptseg.sam_model_registry["vit_x"]
    with pytest.raises(ValueError):
        promptseg.sam_model_registry["vit_x"]


def test_bad_dtype():
    with pytest.raises(TypeError, match="dtype must be"):
        promptseg.build_sam("vit_b", dtype=torch.int8)


def test_inputs_are_not_modified(predictor, images):
    image = images["dog.jpg"]
    image_copy = image.copy()
    coords = np.array([[100.0, 80.0], [300.0, 200.0]])
    labels = np.array([1, 0])
    box = np.array([50.0, 40.0, 500.0, 400.0])
    mask = np.random.default_rng(0).standard_normal((1, 64, 64)).astype(np.float32)
    saved = [a.copy() for a in (coords, labels, box, mask)]
    predictor.set_image(image, image_format="BGR")
    predictor.predict(coords, labels, box, mask)
    predictor.predict_many([{"point_coords": coords, "point_labels": labels, "box": box, "mask_input": mask}])
    coords_t, labels_t = torch.tensor(coords[None]), torch.tensor(labels[None])
    predictor.predict_torch(coords_t, labels_t)
    assert np.array_equal(image, image_copy)
    for before, after in zip(saved, (coords, labels, box, mask)):
        assert np.array_equal(before, after)
    assert torch.equal(coords_t, torch.tensor(coords[None]))
    predictor.set_image(image)
