"""SAM 2 models on the Decoder seam (``promptseg.decoders.sam2``, CPU): SAM 2's token rule, the SAM 2
decoders (module, fused, auto) against the model's own mask decoder in float64, SAM 2's post-processing,
the fused decode's kernel routing, and features of either kind (``promptseg.encoders.features``)."""

from __future__ import annotations

import copy

import pytest
import torch

from promptseg.amg.regions import RegionCleanup
from promptseg.decoders import AutoDecoder, Decoder, Sam2FusedDecoder, Sam2ModuleDecoder
from promptseg.decoders import fused, sam2 as sam2_decoders
from promptseg.encoders import MultiScaleFeatures, cat_features
from promptseg.prompts.batch import pack_prompts
from promptseg.prompts.frames import SquareResize
from promptseg.prompts.tokens import NOT_A_POINT, SAM2_RULE, token_sequence
from promptseg.prompts.validate import check_prompt_mapping
from tests._support import mixed_prompts, relative_error

BOX_LABELS = [2, 3]


def test_sam2_token_rule():
    """Box corners first, then the points, then one padding token whenever there is a box or a point."""
    points, labels = torch.rand(2, 3, 2), torch.tensor([[1, 0, 1], [0, 1, 1]])
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0], [5.0, 6.0, 7.0, 8.0]])
    coords, token_labels = token_sequence(points, labels, boxes, rule=SAM2_RULE)
    assert token_labels.tolist() == [BOX_LABELS + row + [NOT_A_POINT] for row in labels.tolist()]
    assert torch.equal(coords[:, :2], boxes.reshape(2, 2, 2)) and torch.equal(coords[:, 2:5], points)
    assert token_sequence(None, None, boxes, rule=SAM2_RULE)[1].tolist() == [BOX_LABELS + [NOT_A_POINT]] * 2
    assert token_sequence(points, labels, None, rule=SAM2_RULE)[1][:, -1].tolist() == [NOT_A_POINT] * 2
    assert token_sequence(None, None, None, batch=3, rule=SAM2_RULE)[1].shape == (3, 0)
    # SAM's rule is unchanged: the box after the points, no padding with a box.
    assert token_sequence(points, labels, boxes)[1][0].tolist() == labels[0].tolist() + BOX_LABELS
    with pytest.raises(ValueError, match="rule must be one of"):
        token_sequence(points, labels, None, rule="sam3")


@pytest.fixture(scope="module")
def small_float64(sam2_small):
    return copy.deepcopy(sam2_small).double()


def _features(count: int, seed: int) -> MultiScaleFeatures:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(count, 256, 16, 16), (count, 32, 64, 64), (count, 64, 32, 32)]
    embedding, *levels = (torch.randn(*shape, generator=generator, dtype=torch.float64) for shape in shapes)
    return MultiScaleFeatures(embedding, tuple(levels))


def _packed(count: int = 12, mask_size: int = 64):
    prompts = [check_prompt_mapping(p, mask_size) for p in mixed_prompts(300, 400, count, mask_size=mask_size)]
    return pack_prompts(prompts, [(300, 400)] * count, SquareResize(256), torch.device("cpu"), token_rule=SAM2_RULE)


@pytest.mark.parametrize("make", [Sam2ModuleDecoder, Sam2FusedDecoder])
@pytest.mark.parametrize("multimask_output", [True, False])
def test_sam2_decoders_equal_the_mask_decoder_in_float64(small_float64, make, multimask_output):
    """P mixed prompts (padded, some with mask inputs) on 3 images, through the Decoder interface:
    equal to the model's mask decoder on the whole batch (gathered images, padding masked) in float64,
    and to MaskDecoder.forward on each prompt alone (no padding, no gathering) to 1e-6: the layer norms
    keep float32 statistics, so differently batched float64 work agrees only to ~1e-7."""
    model = small_float64
    decoder = make(model)
    assert isinstance(decoder, Decoder) and decoder.token_rule == SAM2_RULE
    features = _features(3, seed=7)
    batch = _packed(10)
    images = [0, 0, 1, 1, 1, 2, 2, 0, 1, 2]
    encoder, mask_decoder = model.sam_prompt_encoder, model.sam_mask_decoder
    with torch.no_grad():
        low_res, iou, scores = decoder.decode_with_object_scores(features, batch, images, multimask_output)
        dense = encoder.dense_embeddings(len(images), batch.mask_inputs, batch.has_mask)
        whole = mask_decoder.predict_masks(
            features.embedding, encoder.get_dense_pe(), encoder.embed_tokens(batch.coords, batch.labels), dense,
            repeat_image=False, high_res_features=list(features.high_res), image_index=torch.tensor(images),
            token_padding_mask=batch.token_mask,
        )
        expected_masks, expected_iou = mask_decoder.select_masks(whole[0], whole[1], multimask_output)
        assert relative_error(low_res, expected_masks) < 1e-10 and relative_error(iou, expected_iou) < 1e-10
        assert relative_error(scores, whole[3]) < 1e-10
        lengths = batch.token_mask.sum(1).tolist()
        for prompt, image in enumerate(images if make is Sam2ModuleDecoder else []):
            tokens, rows, one = slice(0, lengths[prompt]), slice(image, image + 1), slice(prompt, prompt + 1)
            sparse = encoder.embed_tokens(batch.coords[one, tokens], batch.labels[one, tokens])
            has_mask = batch.has_mask is not None and bool(batch.has_mask[prompt])
            dense = encoder.embed_masks(batch.mask_inputs[one]) if has_mask else encoder.no_mask_dense_embeddings(1)
            alone = mask_decoder(
                features.embedding[rows], encoder.get_dense_pe(), sparse, dense, multimask_output, repeat_image=False,
                high_res_features=[level[rows] for level in features.high_res],
            )
            assert relative_error(low_res[one], alone[0]) < 1e-6, prompt
            assert (iou[one] - alone[1]).abs().max() < 1e-6 and (scores[one] - alone[3]).abs().max() < 1e-6, prompt
    assert low_res.shape == (10, 3 if multimask_output else 1, 64, 64) and batch.token_mask is not None


def test_sam2_decoders_post_process_in_the_square_frame(small_float64):
    """Resized straight to the image (no padding to crop); the clean-up runs on the low-res logits."""
    decoder = AutoDecoder(small_float64)
    low_res = torch.nn.functional.avg_pool2d(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)), 5, 1, 2)
    full = decoder.postprocess(low_res, (256, 256), (300, 400), 256, 0.0, True)
    expected = torch.nn.functional.interpolate(low_res, (300, 400), mode="bilinear", align_corners=False)
    assert torch.equal(full, expected)
    assert torch.equal(decoder.postprocess(low_res, (256, 256), (300, 400), 256, 0.5, False), expected > 0.5)
    cleaned = decoder.with_cleanup(RegionCleanup(0.0, 20, 20))
    assert cleaned.cleanup == RegionCleanup(0.0, 20, 20) and decoder.cleanup is None
    assert cleaned.module.model is decoder.module.model and cleaned.fused is not decoder.fused
    changed = cleaned.postprocess(low_res, (256, 256), (300, 400), 256, 0.0, True)
    assert torch.equal(changed, sam2_decoders.upscale_sam2_logits(low_res, (300, 400), RegionCleanup(0.0, 20, 20)))
    assert not torch.equal(changed, full)
    boxes, stability = cleaned.measure(low_res, (256, 256), (300, 400), 256, 0.0, 1.0)
    assert boxes.shape == (6, 4) and stability.shape == (6,)


def test_sam_decoders_reject_sam2_requests(tiny_pair):
    """SAM has neither object scores nor SAM 2's clean-up; its decoders keep SAM's token rule."""
    decoder = AutoDecoder(tiny_pair[1])
    assert decoder.token_rule == "sam" and decoder.graphs is not None
    with pytest.raises(TypeError, match="SAM 2"):
        decoder.with_cleanup(RegionCleanup())
    with pytest.raises(TypeError, match="MultiScaleFeatures"):
        Sam2ModuleDecoder(copy.deepcopy(tiny_pair[1])) if False else sam2_decoders.multiscale(torch.zeros(1))


def test_sam2_fused_decode_traced_with_fake_cuda_tensors_uses_the_kernels(monkeypatch, kernel_routes):
    """The whole SAM 2 fused decode, traced on fake CUDA bf16 tensors: every attention goes to a kernel
    (the kernels opted in, as the SAM test of the same name does)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from promptseg.sam2.build_sam import instantiate_model
    from promptseg.sam2.configs import model_config

    routed = kernel_routes
    from promptseg.sam2.modeling import sam2_base

    monkeypatch.setattr(sam2_base, "trunc_normal_", lambda tensor, std: tensor)  # data-dependent under fake tensors
    with FakeTensorMode(), torch.no_grad():
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.device("cuda"):
                model = instantiate_model(model_config("configs/sam2.1/sam2.1_hiera_t.yaml")).eval()
        finally:
            torch.set_default_dtype(torch.float32)
        embedding = torch.empty(2, 256, 64, 64, dtype=torch.bfloat16, device="cuda")
        levels = (
            torch.empty(2, 32, 256, 256, dtype=torch.bfloat16, device="cuda"),
            torch.empty(2, 64, 128, 128, dtype=torch.bfloat16, device="cuda"),
        )
        features = MultiScaleFeatures(embedding, levels)
        if not sam2_decoders.sam2_fused_path_available(model, features):
            pytest.skip("promptseg's decoder attention kernels are not built here")
        # Sam2FusedDecoder.decode_all's steps (its host-side index packing has no fake form)
        table = fused.image_table(model, embedding)
        sparse = torch.empty(5, 4, 256, dtype=torch.bfloat16, device="cuda")
        index = torch.tensor([0, 1, 1, 0, 1], device="cuda")
        hs, keys, grid = fused.transform_gathered(model, table, index, sparse, torch.ones(5, 4, dtype=torch.bool, device="cuda"))
        masks, iou, _, scores = model.sam_mask_decoder.masks_from_tokens(hs, keys, grid, [level[index] for level in levels])
        assert masks.shape == (5, 4, 256, 256) and iou.shape == (5, 4) and scores.shape == (5, 1)
    assert routed and all(used for _, used in routed), routed
    assert {name for name, _ in routed} == {"token_attention", "gathered_token_attention"}


def test_features_of_either_kind_concatenate(sam2_small):
    parts = [_features(1, seed) for seed in (1, 2)]
    joined = cat_features(parts)
    assert len(joined) == 2 and joined.shape == (2, 256, 16, 16) and joined.dtype == torch.float64
    assert torch.equal(joined.rows(1).high_res[1], parts[1].high_res[1]) and joined.rows(-1).embedding.shape[0] == 1
    with pytest.raises(ValueError, match="rows"):
        MultiScaleFeatures(torch.zeros(2, 4, 2, 2), (torch.zeros(1, 4, 8, 8),))
    assert torch.equal(cat_features([torch.ones(1, 2), torch.zeros(1, 2)]), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
