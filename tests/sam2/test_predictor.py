"""SAM2ImagePredictor beyond parity: clear errors for bad input, PIL images, untouched inputs, prompt
batches of masks alone, and the hole / sprinkle post-processing (the official one needs its CUDA
extension; here it is checked against connected components from scipy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from promptseg.errors import ImageNotSetError
from promptseg.sam2 import SAM2ImagePredictor, build_sam2
from promptseg.sam2.utils.transforms import SAM2Transforms

# Hiera-t at 256 x 256: the same code paths as at 1024 (padded windows, pooled windows), 16x cheaper.
SMALL = ["model.image_size=256"]


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu", hydra_overrides_extra=SMALL)


@pytest.fixture(scope="module")
def predictor(small_model, images):
    predictor = SAM2ImagePredictor(small_model)
    predictor.set_image(images["dog.jpg"])
    return predictor


def test_shapes_at_another_resolution(predictor, images):
    assert predictor.get_image_embedding().shape == (1, 256, 16, 16)
    assert [tuple(f.shape) for f in predictor._features["high_res_feats"]] == [(1, 32, 64, 64), (1, 64, 32, 32)]
    masks, scores, low_res = predictor.predict(point_coords=[[100, 200]], point_labels=[1])
    assert masks.shape == (3,) + images["dog.jpg"].shape[:2] and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert scores.shape == (3,) and low_res.shape == (3, 64, 64)
    assert np.abs(low_res).max() <= 32.0


def test_pil_image_equals_array(small_model, predictor, images):
    other = SAM2ImagePredictor(small_model)
    other.set_image(Image.fromarray(images["dog.jpg"]).convert("L").convert("RGB"))
    gray = np.asarray(Image.fromarray(images["dog.jpg"]).convert("L").convert("RGB"))
    reference = SAM2ImagePredictor(small_model)
    reference.set_image(gray)
    assert torch.equal(other.get_image_embedding(), reference.get_image_embedding())
    assert other._orig_hw == predictor._orig_hw == [images["dog.jpg"].shape[:2]]


def test_inputs_are_not_modified(predictor):
    coords, labels = np.array([[[100.0, 200.0], [300.0, 50.0]]]), np.array([[1, 0]])
    box = np.array([10.0, 20.0, 300.0, 400.0])
    mask = np.random.default_rng(0).normal(size=(1, 64, 64)).astype(np.float32)
    copies = [x.copy() for x in (coords, labels, box, mask)]
    predictor.predict(point_coords=coords, point_labels=labels, box=box, mask_input=mask)
    for before, after in zip(copies, (coords, labels, box, mask)):
        assert np.array_equal(before, after)


def test_batch_of_masks_alone(predictor):
    """B > 1 mask inputs without points (the official predictor asserts here) decode each mask."""
    masks = np.random.default_rng(1).normal(size=(2, 1, 64, 64)).astype(np.float32)
    batched = predictor.predict(mask_input=masks, multimask_output=False)
    assert batched[0].shape[:2] == (2, 1)
    for index in range(2):
        single = predictor.predict(mask_input=masks[index], multimask_output=False)
        np.testing.assert_allclose(batched[2][index], single[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"point_coords": [[1, 2]]}, ValueError, "without point_labels"),
        ({"point_labels": [1]}, ValueError, "without point_coords"),
        ({"point_coords": [[1, 2, 3]], "point_labels": [1]}, ValueError, r"shape \(N, 2\) or \(B, N, 2\)"),
        ({"point_coords": [[1, 2]], "point_labels": [1, 1]}, ValueError, r"point_labels must have shape \(1,\)"),
        ({"point_coords": [[1, 2]], "point_labels": [7]}, ValueError, "must be 1 \\(foreground\\) or 0"),
        ({"point_coords": [[np.nan, 2]], "point_labels": [1]}, ValueError, "finite"),
        ({"point_coords": "a", "point_labels": [1]}, TypeError, "numbers"),
        ({"box": [1, 2, 3]}, ValueError, r"shape \(4,\) or \(B, 4\)"),
        ({"box": [30, 2, 3, 40]}, ValueError, "x0 <= x1"),
        ({"mask_input": np.zeros((1, 256, 256))}, ValueError, r"\(1, 64, 64\)"),
        (
            {"point_coords": np.zeros((2, 1, 2)), "point_labels": np.ones((2, 1)), "box": np.zeros((3, 4))},
            ValueError,
            "different numbers of prompts",
        ),
    ],
)
def test_bad_prompts_raise_clear_errors(predictor, kwargs, error, message):
    with pytest.raises(error, match=message):
        predictor.predict(**kwargs)


def test_bad_images_and_state(small_model, images):
    predictor = SAM2ImagePredictor(small_model)
    with pytest.raises(ImageNotSetError, match="set_image"):
        predictor.predict(point_coords=[[1, 2]], point_labels=[1])
    with pytest.raises(RuntimeError):
        predictor.get_image_embedding()
    with pytest.raises(TypeError, match="uint8"):
        predictor.set_image(images["dog.jpg"].astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predictor.set_image(images["dog.jpg"][..., 0])
    with pytest.raises(TypeError, match="PIL image"):
        predictor.set_image([[0]])
    with pytest.raises(TypeError, match="list"):
        predictor.set_image_batch(images["dog.jpg"])
    predictor.set_image(images["dog.jpg"])
    with pytest.raises(ImageNotSetError, match="set_image_batch"):
        predictor.predict_batch(point_coords_batch=[[[1, 2]]], point_labels_batch=[[1]])
    predictor.set_image_batch([images["dog.jpg"], images["dog.jpg"][:100, :200]])
    with pytest.raises(ValueError, match=r"box_batch must hold one entry per image \(2\)"):
        predictor.predict_batch(box_batch=[np.array([1, 2, 3, 4])])
    masks, _, _ = predictor.predict_batch(box_batch=[np.array([1, 2, 3, 4]), np.array([5, 6, 70, 80])])
    assert masks[0].shape[-2:] == (534, 800) and masks[1].shape[-2:] == (100, 200)
    predictor.reset_predictor()
    with pytest.raises(ImageNotSetError):
        predictor.predict(box=[1, 2, 3, 4])


def reference_postprocess(masks: torch.Tensor, threshold: float, max_hole: float, max_sprinkle: float, size):
    """The official post-processing with scipy's 8-connected components in place of the CUDA extension."""
    ndimage = pytest.importorskip("scipy.ndimage")
    logits = masks.float().clone()
    out = logits.clone()
    for index in np.ndindex(*logits.shape[:2]):
        plane = logits[index].numpy()
        steps = ((plane <= threshold, max_hole, 10.0), (plane > threshold, max_sprinkle, -10.0))
        for region, area_limit, value in steps:
            if area_limit <= 0:
                continue
            labels, count = ndimage.label(region, structure=np.ones((3, 3)))
            areas = np.bincount(labels.ravel(), minlength=count + 1)
            small = (labels > 0) & (areas[labels] <= area_limit)
            out[index][torch.from_numpy(small)] = threshold + value
    return torch.nn.functional.interpolate(out, size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("max_hole, max_sprinkle", [(0.0, 0.0), (5.0, 0.0), (0.0, 8.0), (12.5, 3.0)])
def test_hole_and_sprinkle_removal(max_hole, max_sprinkle):
    generator = torch.Generator().manual_seed(0)
    blobs = torch.nn.functional.avg_pool2d(torch.randn(2, 3, 64, 64, generator=generator), 5, 1, 2) * 5
    transforms = SAM2Transforms(1024, 0.2, max_hole_area=max_hole, max_sprinkle_area=max_sprinkle)
    actual = transforms.postprocess_masks(blobs, (50, 70))
    expected = reference_postprocess(blobs, 0.2, max_hole, max_sprinkle, (50, 70))
    assert torch.equal(actual, expected)
    if max_hole or max_sprinkle:
        plain = SAM2Transforms(1024, 0.2).postprocess_masks(blobs, (50, 70))
        assert not torch.equal(actual, plain), "the case should change something"


def test_generator_passes_min_region_area_to_the_predictor(small_model):
    from promptseg.sam2 import SAM2AutomaticMaskGenerator

    generator = SAM2AutomaticMaskGenerator(small_model, min_mask_region_area=25)
    transforms = generator.predictor._transforms
    assert (transforms.max_hole_area, transforms.max_sprinkle_area) == (25, 25)
    with pytest.raises(ValueError, match="exactly one of points_per_side and point_grids"):
        SAM2AutomaticMaskGenerator(small_model, points_per_side=None)
    with pytest.raises(ValueError, match="output_mode"):
        SAM2AutomaticMaskGenerator(small_model, output_mode="png")
