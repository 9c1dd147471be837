"""The Decoder seam on the CPU: every decoder against the model's own modules in float64, the
fused decoder's table and its routing to the kernels (traced with fake CUDA tensors), and the
automatic choice.

The GPU runs of the same decoders are in tests/decoders/test_cuda.py; the model's own decode methods
(``Sam.decode_tokens``, the gathered two-way block) in tests/modeling/test_decode.py.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

import promptseg
from promptseg.build import construct_sam
from promptseg.configs import VIT_B
from promptseg.decoders import AutoDecoder, Decoder, FusedDecoder, GraphDecoder, ModuleDecoder, fused
from promptseg.ops import extension_loaded, mask_postprocess
from promptseg.prompts.batch import pack_prompts
from promptseg.prompts.validate import check_prompt_mapping
from tests._support import TINY, mixed_prompts, model_pair, relative_error

needs_extension = pytest.mark.skipif(
    not extension_loaded(), reason="the CUDA extension promptseg._C is not built (setup.py build_ext)"
)


@pytest.fixture(scope="module")
def tiny_float64():
    """A tiny promptseg SAM in float64 (the fused orchestration must reproduce the model exactly there)."""
    _, model = model_pair(TINY, seed=3)
    return model.double()


def test_fused_decode_equals_model_in_float64(tiny_float64):
    """Hoisted first-block work, shared rows and appended mask-prompt rows give the model's outputs."""
    model = tiny_float64
    features = torch.randn(3, 64, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    prompts = [check_prompt_mapping(p, 64) for p in mixed_prompts(300, 400, 12, mask_size=64)]
    images = [0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2]  # image 1 has no prompt
    transform = promptseg.SamPredictor(model).transform
    batch = pack_prompts(prompts, [(300, 400)] * len(prompts), transform, torch.device("cpu"))
    assert batch.masked_prompts == [4, 9]
    table = fused.image_table(model, features[[0, 2]])
    with torch.no_grad():
        masks, iou = fused.decode_prompt_batch(model, table, [0 if i == 0 else 1 for i in images], batch)
        encoder = model.prompt_encoder
        sparse = encoder.embed_tokens(batch.coords, batch.labels)
        dense = encoder.no_mask_dense_embeddings(len(prompts))
        dense = torch.where(batch.has_mask[:, None, None, None], encoder.embed_masks(batch.mask_inputs), dense)
        expected = model.mask_decoder.predict_masks(
            features, encoder.get_dense_pe(), sparse, dense, torch.tensor(images), batch.token_mask
        )
    assert relative_error(masks, expected[0]) < 1e-10 and relative_error(iou, expected[1]) < 1e-10


def test_image_table_key_sees_new_features_and_weight_updates(tiny_float64):
    model = copy.deepcopy(tiny_float64)
    features = torch.zeros(1, 64, 16, 16, dtype=torch.float64)
    key = fused.image_table_key(model, features)
    assert fused.image_table_key(model, features) == key
    with torch.no_grad():
        model.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.add_(1.0)
    assert fused.image_table_key(model, features) != key
    assert fused.image_table_key(model, features.clone()) != fused.image_table_key(model, features)


def test_cpu_float32_takes_the_hoisting_decoder_with_the_module_results(tiny_pair, images):
    """On the CPU in float32 the automatic choice is the fused decoder (its hoisting pays there
    without kernels; ``cpu_hoisting_applies``), and a click, a box, several points and a mask input
    give the module decoder's results to float32 rounding."""
    model = tiny_pair[1]
    predictor = promptseg.SamPredictor(model)
    predictor.set_image(images["dog.jpg"])
    assert fused.cpu_hoisting_applies(model, predictor.features)
    assert isinstance(predictor.decoder.choose(predictor.features, 1), FusedDecoder)
    reference = promptseg.SamPredictor(model, decoder=ModuleDecoder(model))
    reference.set_image(images["dog.jpg"])
    side = 4 * predictor.features.shape[-1]  # the low-res mask side
    low_res = np.random.default_rng(0).normal(size=(1, side, side)).astype(np.float32)
    prompts = [
        {"point_coords": np.array([[100.0, 100.0]]), "point_labels": np.array([1])},
        {"box": np.array([10.0, 10.0, 200.0, 100.0])},
        {"point_coords": np.array([[50.0, 60.0], [120.0, 30.0]]), "point_labels": np.array([1, 0]), "mask_input": low_res},
    ]
    got, expected = predictor.predict_many(prompts, return_logits=True), reference.predict_many(prompts, return_logits=True)
    for ours, theirs in zip(got, expected):
        assert relative_error(torch.from_numpy(ours), torch.from_numpy(theirs)) < 1e-5
    click = predictor.predict(**prompts[0])
    assert relative_error(torch.from_numpy(click[2]), torch.from_numpy(reference.predict(**prompts[0])[2])) < 1e-5


def test_predict_under_inference_mode_builds_the_table_per_call(tiny_pair, images):
    """Features made under ``torch.inference_mode`` are inference tensors, without the version counter
    the image-table cache checks: the table is then built for each call (never a stale one), and the
    results are those of ``no_grad``."""
    model = tiny_pair[1]
    predictor = promptseg.SamPredictor(model)
    point = {"point_coords": np.array([[100.0, 120.0]]), "point_labels": np.array([1])}
    predictor.set_image(images["dog.jpg"])
    expected = predictor.predict(**point)
    with torch.inference_mode():
        predictor.set_image(images["dog.jpg"])
        assert predictor.features.is_inference() and fused.image_table_key(model, predictor.features) is None
        first, again = predictor.predict(**point), predictor.predict(**point)
        predictor.features.mul_(0.5)  # an in-place change is seen: nothing was cached
        changed = predictor.predict(**point)
    for ours, theirs in zip(first, expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(first[2], again[2])
    assert not np.array_equal(changed[2], first[2])


def test_set_image_prepares_the_table_so_the_first_click_builds_none(tiny_pair, images, monkeypatch):
    """Setting an image builds the fused decoder's image table (``Decoder.prepare``), so a first click
    costs what later ones do; under inference mode, where no table can be cached, nothing is built ahead."""
    model = tiny_pair[1]
    built = []
    original = fused.image_table
    monkeypatch.setattr(fused, "image_table", lambda *args: built.append(1) or original(*args))
    predictor = promptseg.SamPredictor(model)
    point = {"point_coords": np.array([[100.0, 120.0]]), "point_labels": np.array([1])}
    predictor.set_image(images["dog.jpg"])
    assert built == [1]
    predictor.predict(**point)
    predictor.predict(**point)
    assert built == [1]
    with torch.inference_mode():
        predictor.set_image(images["dog.jpg"])
        assert built == [1]
        predictor.predict(**point)
    assert built == [1, 1]


def test_cpu_hoisting_is_not_taken_in_float64_or_on_the_reference_backend(tiny_pair, tiny_float64):
    from promptseg.ops import set_backend

    features = torch.zeros(1, 64, 16, 16)
    assert not fused.cpu_hoisting_applies(tiny_float64, features.double())
    model = copy.deepcopy(tiny_pair[1])
    set_backend(model, "reference")
    assert not fused.cpu_hoisting_applies(model, features)
    assert isinstance(AutoDecoder(model).choose(features, 1), ModuleDecoder)


@needs_extension
def test_fused_decode_traced_with_fake_cuda_tensors_uses_the_kernels(kernel_routes):
    """The whole fused decode, traced on fake CUDA bf16 tensors: every attention goes to a kernel.

    The kernels are opted in (PROMPTSEG_KERNELS=1, the ``kernel_routes`` fixture): by default they are
    opt-in until a GPU record verifies them, and this test is about the routing once they are in force."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    routed = kernel_routes
    with FakeTensorMode(), torch.no_grad():
        torch.set_default_dtype(torch.bfloat16)  # (.to() cannot swap fake parameters: build them in place)
        try:
            with torch.device("cuda"):
                model = construct_sam(dataclasses.replace(VIT_B, encoder_depth=1, encoder_global_attn_indexes=(0,)))
        finally:
            torch.set_default_dtype(torch.float32)
        features = torch.empty(1, 256, 64, 64, dtype=torch.bfloat16, device="cuda")
        assert fused.fused_path_available(model, features)
        table = fused.image_table(model, features)
        sparse = torch.empty(6, 4, 256, dtype=torch.bfloat16, device="cuda")
        token_mask = torch.ones(6, 4, dtype=torch.bool, device="cuda")
        index = torch.tensor([0, 0, 0, 1, 0, 0], device="cuda")
        dense = torch.empty(1, 256, 64, 64, dtype=torch.bfloat16, device="cuda")
        masks, iou = fused.decode_masks(model, table, index, sparse, token_mask, index[:1], dense)
        assert masks.shape == (6, 4, 256, 256) and iou.shape == (6, 4)
        full = mask_postprocess(masks[:, 1:], (683, 1024), (1200, 1800), 1024)
        assert full.masks.shape == (6, 3, 1200, 1800) and full.masks.dtype == torch.bool
    assert routed and all(used for _, used in routed), routed
    assert {name for name, _ in routed} == {"token_attention", "gathered_token_attention"}


def _float64_batch(model, count: int = 12):
    prompts = [check_prompt_mapping(p, 64) for p in mixed_prompts(300, 400, count, mask_size=64)]
    transform = promptseg.SamPredictor(model).transform
    return pack_prompts(prompts, [(300, 400)] * len(prompts), transform, torch.device("cpu"))


@pytest.mark.parametrize("make", [ModuleDecoder, FusedDecoder, AutoDecoder, lambda m: GraphDecoder(FusedDecoder(m))])
@pytest.mark.parametrize("multimask_output", [True, False])
def test_every_decoder_equals_the_model_in_float64(tiny_float64, make, multimask_output):
    """Through the Decoder interface: P mixed prompts (padded, with and without mask inputs) on 3 images."""
    model = tiny_float64
    decoder = make(model)
    assert isinstance(decoder, Decoder)
    features = torch.randn(3, 64, 16, 16, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    batch = _float64_batch(model)
    images = [0, 0, 1, 1, 1, 1, 2, 2, 2, 0, 1, 2]
    with torch.no_grad():
        low_res, iou = decoder.decode(features, batch, images, multimask_output)
        encoder = model.prompt_encoder
        dense = encoder.dense_embeddings(len(images), batch.mask_inputs, batch.has_mask)
        expected = model.mask_decoder(
            features, encoder.get_dense_pe(), encoder.embed_tokens(batch.coords, batch.labels), dense,
            multimask_output, torch.tensor(images), batch.token_mask,
        )
    assert low_res.shape == expected[0].shape and iou.shape == expected[1].shape
    assert relative_error(low_res, expected[0]) < 1e-10 and relative_error(iou, expected[1]) < 1e-10
    side = model.image_encoder.img_size
    input_size = (side * 3 // 4, side)
    full = decoder.postprocess(low_res[:2], input_size, (300, 400), side, model.mask_threshold, True)
    assert torch.equal(full, model.postprocess_masks(low_res[:2], input_size, (300, 400)))


def test_auto_decoder_takes_the_module_path_off_the_fused_one(tiny_float64):
    decoder = AutoDecoder(tiny_float64)
    features = torch.zeros(1, 64, 16, 16, dtype=torch.float64)
    assert decoder.choose(features, 1) is decoder.module and decoder.choose(features, 64) is decoder.module
    assert decoder.backend == "auto"
    assert AutoDecoder(promptseg.ops.set_backend(copy.deepcopy(tiny_float64), "reference")).backend == "reference"


def test_auto_decoder_choice_on_the_fused_path(tiny_float64, monkeypatch):
    """Where the fused path applies: graphs for one prompt on one image (unless switched off), else fused."""
    import promptseg.decoders.auto as auto

    monkeypatch.setattr(auto, "fused_path_available", lambda model, features: True)
    decoder = AutoDecoder(tiny_float64)
    one, three = torch.zeros(1, 64, 16, 16), torch.zeros(3, 64, 16, 16)
    assert decoder.choose(one, 1) is decoder.graphs
    assert decoder.choose(one, 2) is decoder.fused and decoder.choose(three, 1) is decoder.fused
    decoder.use_cuda_graphs = False
    assert decoder.choose(one, 1) is decoder.fused


def test_predictor_and_generator_run_the_decoder_they_are_given(tiny_pair, images):
    """A caller's decoder replaces the default everywhere: predict, predict_torch, predict_many, the generator."""
    model = tiny_pair[1]

    class Counting(ModuleDecoder):
        calls = 0

        def decode(self, features, batch, image_index, multimask_output):
            Counting.calls += 1
            return super().decode(features, batch, image_index, multimask_output)

    predictor = promptseg.SamPredictor(model, prompt_batch_size=64, decoder=Counting(model))  # one decode per call
    default = promptseg.SamPredictor(model)
    for p in (predictor, default):
        p.set_image(images["dog.jpg"])
    point = {"point_coords": np.array([[100.0, 120.0]]), "point_labels": np.array([1])}
    # The default is the fused decoder on the CPU: the module decoder's results to float32 rounding.
    (masks, scores, logits), (default_masks, default_scores, default_logits) = predictor.predict(**point), default.predict(**point)
    assert (masks != default_masks).mean() <= 1e-4 and np.abs(scores - default_scores).max() <= 1e-5
    assert relative_error(torch.from_numpy(logits), torch.from_numpy(default_logits)) < 1e-5
    predictor.predict_many([point, {"box": np.array([10.0, 10.0, 200.0, 100.0])}])
    predictor.predict_torch(torch.tensor([[[50.0, 60.0]]]), torch.tensor([[1]]))
    assert Counting.calls == 3
    generator = promptseg.SamAutomaticMaskGenerator(model, points_per_side=2, decoder=Counting(model))
    generator.generate(images["dog.jpg"][:100, :150])
    assert Counting.calls == 4
    with pytest.raises(TypeError, match="decoder must be a promptseg.decoders.Decoder, got str"):
        promptseg.SamPredictor(model, decoder="fused")


def test_measure_belongs_to_the_decoder(tiny_float64, monkeypatch):
    """``Decoder.measure`` gives what ``amg.decoding.measure_masks`` computed before it: full-size logits
    by default, three kernel passes where the kernel runs (here on its reference) for decoders over a
    model's modules; a decoder not over a model (the engines) keeps the reference arithmetic."""
    import promptseg.decoders.base as decoder_base
    from promptseg.amg.decoding import measure_masks
    from promptseg.masks import mask_boxes_xyxy, stability_score

    class Plain(Decoder):
        def decode(self, features, batch, image_index, multimask_output):
            raise NotImplementedError

    model = tiny_float64
    low_res = 6 * torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    sizes = ((192, 256), (300, 400), 256, 0.0, 1.0)
    logits = model.postprocess_masks(low_res, sizes[0], sizes[1]).flatten(0, 1)
    expected = mask_boxes_xyxy(logits > 0.0), stability_score(logits, 0.0, 1.0)
    assert Plain().backend == "reference" and ModuleDecoder(model).backend == "auto"
    for decoder in (ModuleDecoder(model), Plain()):
        for actual in (decoder.measure(low_res, *sizes), measure_masks(decoder, low_res, *sizes)):
            assert torch.equal(actual[0], expected[0]) and _same(actual[1], expected[1])

    passes = _spy_on_passes(monkeypatch)
    monkeypatch.setattr(
        decoder_base, "kernel_available", lambda name, *tensors, backend="auto": name == "mask_postprocess" and backend == "auto"
    )
    boxes, stability = ModuleDecoder(model).measure(low_res, *sizes)
    assert passes == [True, True, True]
    assert torch.equal(boxes, expected[0]) and torch.allclose(stability, expected[1], equal_nan=True)
    passes.clear()
    boxes, stability = Plain().measure(low_res, *sizes)
    assert passes == [False] and torch.equal(boxes, expected[0]) and _same(stability, expected[1])


def test_cpu_measure_takes_three_tiled_passes_for_large_masks(tiny_float64, monkeypatch):
    """On the CPU, a model's decoder measures masks of at least 2^18 pixels in all by three
    ``mask_postprocess`` passes (the tiled path), smaller ones from full-size logits; the boxes and
    scores equal the full-logit ones for these blob-like logits."""
    from promptseg.masks import mask_boxes_xyxy, stability_score

    model = tiny_float64
    blobs = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(7)) * 8
    low_res = torch.nn.functional.interpolate(blobs, (64, 64), mode="bilinear", align_corners=False)
    passes = _spy_on_passes(monkeypatch)
    for original_size, expected_passes in (((300, 400), [True] * 3), ((60, 80), [False])):
        sizes = ((192, 256), original_size, 256, 0.0, 1.0)
        logits = model.postprocess_masks(low_res, sizes[0], sizes[1]).flatten(0, 1)
        passes.clear()
        boxes, stability = ModuleDecoder(model).measure(low_res, *sizes)
        assert passes == expected_passes
        assert torch.equal(boxes, mask_boxes_xyxy(logits > 0.0))
        assert _same(stability, stability_score(logits, 0.0, 1.0))


def _spy_on_passes(monkeypatch) -> list:
    """Record, for each ``mask_postprocess`` call of ``Decoder.measure``, whether it asked for stats."""
    import promptseg.decoders.base as decoder_base

    passes = []
    original = decoder_base.mask_postprocess

    def spy(*args, **kwargs):
        passes.append(kwargs.get("with_stats", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(decoder_base, "mask_postprocess", spy)
    return passes


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where the other has NaN."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
