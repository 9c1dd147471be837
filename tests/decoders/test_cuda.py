"""GPU: the predictor's decoders on CUDA (the fused decoder with promptseg's kernels, CUDA-graph
replay) against the official fp32 model and the same bf16 model on the reference ops.
Skipped without CUDA and the extension."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

import promptseg
from promptseg.decoders import FusedDecoder, ModuleDecoder
from promptseg.ops import extension_loaded
from tests._support import cuda_predictors, load_image, mixed_prompts, relative_error

needs_extension = pytest.mark.skipif(
    not extension_loaded(), reason="the CUDA extension promptseg._C is not built (setup.py build_ext)"
)


@pytest.fixture(scope="module")
def bf16_predictors(vit_b_pair, images):
    """(official fp32 SamPredictor on CUDA, promptseg bf16 SamPredictor on CUDA), truck.jpg set."""
    return cuda_predictors(*vit_b_pair, images["truck.jpg"])


@pytest.mark.gpu
@needs_extension
def test_predictor_bf16_fused_matches_official_fp32(bf16_predictors, images):
    official, ours = bf16_predictors
    assert isinstance(ours.decoder.choose(ours.features, 2), FusedDecoder)
    height, width = images["truck.jpg"].shape[:2]
    prompts = mixed_prompts(height, width, 10, seed=1)
    many = ours.predict_many(prompts)
    for index, prompt in enumerate(prompts):
        masks, scores, logits = official.predict(**prompt)
        for label, (low_masks, low_scores, low_logits) in (("predict", ours.predict(**prompt)), ("many", tuple(o[index] for o in many))):
            assert relative_error(low_logits, logits) <= 2e-2, (label, index)
            assert np.abs(low_scores - scores).max() <= 2e-2, (label, index)
            assert (low_masks != masks).mean() <= 5e-3, (label, index)


@pytest.mark.gpu
@needs_extension
@pytest.mark.parametrize("prompts", [1, 7, 64, 1000])
def test_fused_batches_match_the_reference_path(bf16_predictors, images, prompts):
    """P mixed prompts through the fused path vs the same bf16 model on the reference ops."""
    _, ours = bf16_predictors
    reference = promptseg.SamPredictor(promptseg.ops.set_backend(copy.deepcopy(ours.model), "reference"), prompt_batch_size=64)
    reference.set_image(images["truck.jpg"])
    assert isinstance(reference.decoder.choose(reference.features, 2), ModuleDecoder)
    height, width = images["truck.jpg"].shape[:2]
    batch = mixed_prompts(height, width, prompts, seed=prompts)
    ours.prompt_batch_size = 256
    masks, scores, logits = ours.predict_many(batch, multimask_output=prompts % 2 == 0)
    ref_masks, ref_scores, ref_logits = reference.predict_many(batch, multimask_output=prompts % 2 == 0)
    assert relative_error(logits, ref_logits) <= 2e-2
    assert np.abs(scores - ref_scores).max() <= 2e-2
    assert (masks != ref_masks).mean() <= 5e-3


@pytest.mark.gpu
@needs_extension
def test_cuda_graph_predict_equals_eager_and_syncs_once(bf16_predictors, images):
    _, ours = bf16_predictors
    height, width = images["truck.jpg"].shape[:2]
    prompts = mixed_prompts(height, width, 5, seed=2)
    for multimask, return_logits in ((True, False), (False, True)):
        for prompt in prompts:
            ours.decoder.use_cuda_graphs = False
            eager = ours.predict(**prompt, multimask_output=multimask, return_logits=return_logits)
            ours.decoder.use_cuda_graphs = True
            graphed = [ours.predict(**prompt, multimask_output=multimask, return_logits=return_logits) for _ in range(2)]
            for result in graphed:
                for actual, expected in zip(result, eager):
                    assert actual.dtype == expected.dtype and actual.shape == expected.shape
                    np.testing.assert_array_equal(actual, expected)
    # A second image of the same size reuses the graphs (the image table is copied in).
    ours.set_image(images["truck.jpg"][::-1].copy())
    graphs = dict(ours.decoder.graphs.buckets)
    ours.predict(**prompts[0])
    assert all(ours.decoder.graphs.buckets.get(key) is bucket for key, bucket in graphs.items())
    ours.set_image(images["truck.jpg"])
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours.predict(**prompts[0])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 1, [str(w.message) for w in syncs]


@pytest.mark.gpu
@needs_extension
def test_graphs_follow_model_weights(bf16_predictors, images):
    """Casting the model after graphs were captured drops them instead of replaying stale weights."""
    _, ours = bf16_predictors
    point = {"point_coords": np.array([[900.0, 600.0]]), "point_labels": np.array([1])}
    ours.predict(**point)
    model = copy.deepcopy(ours.model)
    predictor = promptseg.SamPredictor(model)
    predictor.set_image(load_image("truck.jpg"))
    first = predictor.predict(**point)
    model.to(torch.float16)
    predictor.set_image(load_image("truck.jpg"))
    second = predictor.predict(**point)
    assert relative_error(second[2], first[2]) <= 2e-2
