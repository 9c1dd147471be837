"""Zero-shot edges: the building blocks (Sobel, edge NMS), the detector's output and bad input, and the
measured acceptance test: on held-out synthetic scenes the bundled model's ODS F beats Sobel on the image."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from promptseg.bundled import build_bundled_sam
from promptseg.data.synthetic import HELD_OUT_SEED, generate_scene
from promptseg.data.synthetic_coco import boundary_map, region_labels
from promptseg.evaluate.edges import evaluate_edges
from promptseg.zeroshot import EdgeDetector, edges
from promptseg.zeroshot.baselines import image_sobel_edges
from promptseg.zeroshot.edge_maps import edge_nms, sobel_magnitude

# Held-out scenes (never seen in training); 768 masks per image cost ~10 s each on a 2-core CPU.
EDGE_SCENES = [(HELD_OUT_SEED, 14, index) for index in range(3)]


@pytest.fixture(scope="module")
def model():
    return build_bundled_sam()


def test_sobel_of_a_sharp_step_is_one_and_flat_is_zero():
    step = torch.zeros(1, 16, 16)
    step[:, :, 8:] = 1.0
    magnitude = sobel_magnitude(step)
    assert magnitude[0, 5, 7] == pytest.approx(1.0) and magnitude[0, 5, 8] == pytest.approx(1.0)
    assert magnitude[0, :, :6].abs().max() == 0 and magnitude[0, :, 10:].abs().max() == 0
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        sobel_magnitude(step[0])


def test_edge_nms_thins_a_blurred_line_to_its_ridge():
    xs = torch.arange(64, dtype=torch.float32)
    ridge = torch.exp(-((xs - 30.0) ** 2) / 8.0)
    edge = ridge[None].expand(64, 64).clone()  # a vertical line at x = 30, 5 px wide
    before = edge.clone()
    thinned = edge_nms(edge)
    assert torch.equal(edge, before)
    rows = thinned[10:54]
    assert (rows[:, 30] > 0.9).all() and (rows[:, 28] == 0).all() and (rows[:, 32] == 0).all()
    assert (thinned[:, 0] == 0).all()  # the frame fades to 0


def test_edges_shape_range_and_bad_input(model):
    image = generate_scene((HELD_OUT_SEED, 14, 99), size=96).image
    kept = image.copy()
    detector = EdgeDetector(model, points_per_side=3)
    edge = detector(image)
    assert edge.shape == (96, 96) and edge.dtype == np.float32
    assert edge.min() >= 0.0 and edge.max() <= 1.0 and edge.max() > 0.1
    assert np.array_equal(image, kept)
    raw = EdgeDetector(model, points_per_side=3, thin=False)(image)
    assert (raw > 0).sum() > (edge > 0).sum()
    assert np.allclose(edges(image, model=model, points_per_side=3), edge, atol=1e-5)
    with pytest.raises(ValueError, match="points_per_side"):
        EdgeDetector(model, points_per_side=0)
    with pytest.raises(ValueError, match="nms_thresh"):
        EdgeDetector(model, nms_thresh=1.5)
    with pytest.raises(TypeError, match="detect_batch expects a sequence"):
        detector.detect_batch(image)
    with pytest.raises(ValueError, match=r"images\[1\]"):
        detector.detect_batch([image, image[..., :2]])


def test_edges_beat_sobel_on_the_image(model):
    scenes = [generate_scene(seed) for seed in EDGE_SCENES]
    truth = [boundary_map(region_labels(scene)) for scene in scenes]
    start = time.perf_counter()
    ours = EdgeDetector(model).detect_batch([scene.image for scene in scenes])
    seconds = time.perf_counter() - start
    sam = evaluate_edges(ours, truth)
    sobel = evaluate_edges([image_sobel_edges(scene.image) for scene in scenes], truth)
    print(
        f"\nedges on {len(scenes)} held-out scenes (16x16 grid, 768 masks, {seconds:.1f} s): "
        f"SAM ODS F {sam.ods_f:.3f} (P {sam.ods_precision:.3f} R {sam.ods_recall:.3f}), OIS F {sam.ois_f:.3f}, "
        f"AP {sam.ap:.3f} | Sobel on the image ODS F {sobel.ods_f:.3f}, OIS F {sobel.ois_f:.3f}, AP {sobel.ap:.3f}"
    )
    assert sam.ods_f > sobel.ods_f
