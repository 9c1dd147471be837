"""The decoder's fused path: attention and mask post-processing kernels, their fakes and dispatch,
the hoisted/shared decoder orchestration, and the predictor's fused path and CUDA graphs.

CPU tests check everything that does not need a GPU: the references, the exact composition of the
two resamplings the post-processing kernel computes, the fused orchestration against the model in
float64, the fake (meta) kernels and the routing of a fused decode traced with fake CUDA tensors.
Tests marked ``gpu`` run the kernels and are skipped without CUDA.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import numpy as np
import pytest
import torch

import promptseg
from promptseg import fast_path
from promptseg.build import construct_sam
from promptseg.configs import VIT_B
from promptseg.inputs import check_prompt_mapping
from promptseg.ops import decoder_attention, extension_loaded, gathered_token_attention, mask_postprocess
from promptseg.ops.dispatch import kernel_for
from promptseg.ops.mask_postprocess import mask_postprocess_reference
from promptseg.postprocess import mask_areas, mask_boxes_xyxy
from promptseg.prompt_batch import pack_prompts
from tests._support import TINY, cuda_predictors, load_image, model_pair, relative_error

needs_extension = pytest.mark.skipif(
    not extension_loaded(), reason="the CUDA extension promptseg._C is not built (setup.py build_ext)"
)
# (relative error vs float64) of the attention kernels per dtype
KERNEL_TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 3e-3}


def _mixed_prompts(height: int, width: int, count: int, seed: int = 0, mask_size: int = 256) -> list[dict]:
    """``count`` prompts cycling through one point, several points, a box, points and a box, points and a mask."""
    rng = np.random.default_rng(seed)
    mask = rng.normal(size=(1, mask_size, mask_size)).astype(np.float32)
    prompts = []
    for index in range(count):
        points = rng.uniform([0, 0], [width, height], size=(1 + index % 5, 2))
        labels = rng.integers(0, 2, size=len(points))
        x0, y0 = rng.uniform([0, 0], [0.5 * width, 0.5 * height])
        box = np.array([x0, y0, x0 + 0.4 * width, y0 + 0.4 * height])
        kind = index % 5
        if kind == 0:
            prompts.append({"point_coords": points[:1], "point_labels": np.array([1])})
        elif kind == 1:
            prompts.append({"point_coords": points, "point_labels": labels})
        elif kind == 2:
            prompts.append({"box": box})
        elif kind == 3:
            prompts.append({"point_coords": points, "point_labels": labels, "box": box})
        else:
            prompts.append({"point_coords": points[:2], "point_labels": labels[:2], "mask_input": mask})
    return prompts


# --------------------------------------------------------------------------------------- CPU


@pytest.mark.parametrize("return_logits", [False, True])
@pytest.mark.parametrize(
    "input_size, original_size", [((64, 43), (1800, 1200)), ((48, 64), (600, 800)), ((64, 64), (7, 5))]
)
def test_mask_postprocess_reference_equals_sam(tiny_pair, input_size, original_size, return_logits):
    model = tiny_pair[1]
    low_res = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    out = mask_postprocess(low_res, input_size, original_size, model.image_encoder.img_size, model.mask_threshold,
                           return_logits, with_stats=True)
    logits = model.postprocess_masks(low_res, input_size, original_size)
    binary = logits > model.mask_threshold
    assert torch.equal(out.masks, logits if return_logits else binary)
    assert torch.equal(out.boxes, mask_boxes_xyxy(binary)) and torch.equal(out.areas, mask_areas(binary))
    plain = mask_postprocess(low_res, input_size, original_size, model.image_encoder.img_size)
    assert plain.boxes is None and plain.areas is None and torch.equal(plain.masks, binary)


def _taps(scale: float, out_size: int, in_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel's bilinear taps along one axis (float32 arithmetic): first, second index, far weight."""
    source = torch.clamp(torch.tensor(scale, dtype=torch.float32) * (torch.arange(out_size, dtype=torch.float32) + 0.5) - 0.5, min=0.0)
    first = source.long()
    second = first + (first < in_size - 1).long()
    return first, second, source - first.float()


def _composed_postprocess(low_res: torch.Tensor, input_size, original_size, image_size: int) -> torch.Tensor:
    """What csrc/mask_postprocess.cu computes, per output pixel straight from the low-res logits."""
    low_h, low_w = low_res.shape[-2:]
    rows = _taps(input_size[0] / original_size[0], original_size[0], input_size[0])
    cols = _taps(input_size[1] / original_size[1], original_size[1], input_size[1])
    x = low_res.float()

    def frame(row_index: torch.Tensor, col_index: torch.Tensor) -> torch.Tensor:
        """Stage 1 (low-res -> S x S frame) at frame rows ``row_index`` and columns ``col_index``."""
        r0, r1, wr = (t[row_index] for t in _taps(low_h / image_size, image_size, low_h))
        c0, c1, wc = (t[col_index] for t in _taps(low_w / image_size, image_size, low_w))
        wr, wc = wr[:, None], wc[None, :]
        top = (1 - wc) * x[..., r0[:, None], c0[None, :]] + wc * x[..., r0[:, None], c1[None, :]]
        bottom = (1 - wc) * x[..., r1[:, None], c0[None, :]] + wc * x[..., r1[:, None], c1[None, :]]
        return (1 - wr) * top + wr * bottom

    wr, wc = rows[2][:, None], cols[2][None, :]
    top = (1 - wc) * frame(rows[0], cols[0]) + wc * frame(rows[0], cols[1])
    bottom = (1 - wc) * frame(rows[1], cols[0]) + wc * frame(rows[1], cols[1])
    return (1 - wr) * top + wr * bottom


@pytest.mark.parametrize(
    "low, image_size, input_size, original_size",
    [(256, 1024, (683, 1024), (1200, 1800)), (256, 1024, (1024, 768), (640, 480)), (64, 256, (256, 171), (1500, 1000)),
     (256, 1024, (1024, 1024), (333, 333))],
)
def test_composed_resampling_equals_two_interpolations(low, image_size, input_size, original_size):
    """The kernel's one-pass formula (emulated in float32) equals upscale + crop + resize."""
    low_res = 4 * torch.randn(2, 1, low, low, generator=torch.Generator().manual_seed(low))
    expected = mask_postprocess_reference(low_res, input_size, original_size, image_size, return_logits=True).masks
    actual = _composed_postprocess(low_res, input_size, original_size, image_size)
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()
    differ = (actual > 0) != (expected > 0)
    assert bool((expected[differ].abs() < 1e-4).all())


def test_gathered_attention_reference_equals_copies():
    generator = torch.Generator().manual_seed(4)
    q = torch.randn(2, 9, 32, generator=generator, dtype=torch.float64)
    k = torch.randn(3, 5, 32, generator=generator, dtype=torch.float64)
    v = torch.randn(3, 5, 32, generator=generator, dtype=torch.float64)
    q_index, kv_index = torch.tensor([1, 0, 1, 1]), torch.tensor([2, 2, 0, 1])
    mask = torch.tensor([[True] * 5, [True, False, True, True, False], [True] * 5, [False, True, True, True, True]])
    out = gathered_token_attention(q, k, v, 4, mask, q_index=q_index, kv_index=kv_index)
    expected = decoder_attention.token_attention(q[q_index], k[kv_index], v[kv_index], 4, mask)
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="q_index and kv_index must have one length"):
        gathered_token_attention(q, k, v, 4, q_index=q_index, kv_index=kv_index[:3])
    with pytest.raises(ValueError, match="k and v must have 4 batches"):
        gathered_token_attention(q, k, v, 4, q_index=q_index)


@pytest.fixture(scope="module")
def tiny_float64():
    """A tiny promptseg SAM in float64 (the fused orchestration must reproduce the model exactly there)."""
    _, model = model_pair(TINY, seed=3)
    return model.double()


def test_fused_decode_equals_model_in_float64(tiny_float64):
    """Hoisted first-block work, shared rows and appended mask-prompt rows give the model's outputs."""
    model = tiny_float64
    features = torch.randn(3, 64, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    prompts = [check_prompt_mapping(p, 64) for p in _mixed_prompts(300, 400, 12, mask_size=64)]
    images = [0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2]  # image 1 has no prompt
    transform = promptseg.SamPredictor(model).transform
    batch = pack_prompts(prompts, [(300, 400)] * len(prompts), transform, torch.device("cpu"))
    assert batch.masked_prompts == [4, 9]
    table = fast_path.image_table(model, features[[0, 2]])
    with torch.no_grad():
        masks, iou = fast_path.decode_prompt_batch(model, table, [0 if i == 0 else 1 for i in images], batch)
        encoder = model.prompt_encoder
        sparse = encoder.embed_tokens(batch.coords, batch.labels)
        dense = encoder.no_mask_dense_embeddings(len(prompts))
        dense = torch.where(batch.has_mask[:, None, None, None], encoder._embed_masks(batch.mask_inputs), dense)
        expected = model.mask_decoder.predict_masks(
            features, encoder.get_dense_pe(), sparse, dense, torch.tensor(images), batch.token_mask
        )
    assert relative_error(masks, expected[0]) < 1e-10 and relative_error(iou, expected[1]) < 1e-10


def test_image_table_key_sees_new_features_and_weight_updates(tiny_float64):
    model = copy.deepcopy(tiny_float64)
    features = torch.zeros(1, 64, 16, 16, dtype=torch.float64)
    key = fast_path.image_table_key(model, features)
    assert fast_path.image_table_key(model, features) == key
    with torch.no_grad():
        model.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.add_(1.0)
    assert fast_path.image_table_key(model, features) != key
    assert fast_path.image_table_key(model, features.clone()) != fast_path.image_table_key(model, features)


def test_embed_points_equals_embed_tokens(tiny_pair):
    encoder = tiny_pair[1].prompt_encoder
    coords = torch.rand(3, 4, 2, generator=torch.Generator().manual_seed(6)) * 255
    labels = torch.tensor([[1, 0, -1, -1], [2, 3, 1, 0], [-1, 1, 1, 1]])
    frame_h, frame_w = encoder.input_image_size
    frame_xy = torch.tensor([frame_w, frame_h], dtype=torch.float32)
    assert torch.equal(fast_path.embed_points(encoder, coords, labels, frame_xy), encoder.embed_tokens(coords, labels))


def test_fused_path_is_not_taken_on_cpu_or_fp32(tiny_pair, images, monkeypatch):
    model = tiny_pair[1]
    predictor = promptseg.SamPredictor(model)
    predictor.set_image(images["dog.jpg"])
    assert not predictor._fused()
    calls = []
    monkeypatch.setattr(fast_path, "decode_masks", lambda *args, **kwargs: calls.append(args))
    predictor.predict(point_coords=np.array([[100.0, 100.0]]), point_labels=np.array([1]))
    predictor.predict_many([{"box": np.array([10.0, 10.0, 200.0, 100.0])}])
    assert not calls


def test_dispatch_falls_back(monkeypatch):
    q = torch.randn(2, 3, 32)
    assert kernel_for("token_attention", q) is None and kernel_for("mask_postprocess", q[None]) is None
    # Unsupported head dims, zero keys and wide low-res logits run the reference even where a kernel exists.
    assert not decoder_attention._kernel_supports(q, q, 3) and not decoder_attention._kernel_supports(q, q[:, :0], 2)
    monkeypatch.setenv("PROMPTSEG_DISABLE_KERNELS", "1")
    assert kernel_for("gathered_token_attention", q.bfloat16()) is None


@needs_extension
def test_fakes_give_kernel_shapes():
    """The fake kernels (torch.compile / FakeTensor) on meta tensors."""
    q = torch.empty(5, 7, 128, dtype=torch.bfloat16, device="meta")
    image = torch.empty(2, 4096, 128, dtype=torch.bfloat16, device="meta")
    index = torch.empty(5, dtype=torch.long, device="meta")
    mask = torch.empty(5, 7, dtype=torch.bool, device="meta")
    ops = torch.ops.promptseg
    assert ops.token_attention(q, q, q, 8, mask).shape == (5, 7, 128)
    assert ops.gathered_token_attention(q, image, image, 8, None, None, index).shape == (5, 7, 128)
    assert ops.gathered_token_attention(image, q, q, 8, mask, index, None).shape == (5, 4096, 128)
    low_res = torch.empty(4, 3, 256, 256, dtype=torch.float16, device="meta")
    masks, boxes, areas = ops.mask_postprocess(low_res, [683, 1024], [1200, 1800], 1024, 0.0, False, True)
    assert (masks.shape, masks.dtype, boxes.shape, areas.shape) == ((4, 3, 1200, 1800), torch.bool, (4, 3, 4), (4, 3))
    masks, boxes, areas = ops.mask_postprocess(low_res, [683, 1024], [1200, 1800], 1024, 0.0, True, False)
    assert masks.dtype == torch.float32 and boxes.shape == areas.shape == (0,)


@needs_extension
def test_fused_decode_traced_with_fake_cuda_tensors_uses_the_kernels(monkeypatch):
    """The whole fused decode, traced on fake CUDA bf16 tensors: every attention goes to a kernel."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    routed = []
    original = decoder_attention.kernel_for

    def spy(op_name, *tensors, backend="auto"):
        kernel = original(op_name, *tensors, backend=backend)
        routed.append((op_name, kernel is not None))
        return kernel

    monkeypatch.setattr(decoder_attention, "kernel_for", spy)
    with FakeTensorMode(), torch.no_grad():
        torch.set_default_dtype(torch.bfloat16)  # (.to() cannot swap fake parameters: build them in place)
        try:
            with torch.device("cuda"):
                model = construct_sam(dataclasses.replace(VIT_B, encoder_depth=1, encoder_global_attn_indexes=(0,)))
        finally:
            torch.set_default_dtype(torch.float32)
        features = torch.empty(1, 256, 64, 64, dtype=torch.bfloat16, device="cuda")
        assert fast_path.fused_path_available(model, features)
        table = fast_path.image_table(model, features)
        sparse = torch.empty(6, 4, 256, dtype=torch.bfloat16, device="cuda")
        token_mask = torch.ones(6, 4, dtype=torch.bool, device="cuda")
        index = torch.tensor([0, 0, 0, 1, 0, 0], device="cuda")
        dense = torch.empty(1, 256, 64, 64, dtype=torch.bfloat16, device="cuda")
        masks, iou = fast_path.decode_masks(model, table, index, sparse, token_mask, index[:1], dense)
        assert masks.shape == (6, 4, 256, 256) and iou.shape == (6, 4)
        full = mask_postprocess(masks[:, 1:], (683, 1024), (1200, 1800), 1024)
        assert full.masks.shape == (6, 3, 1200, 1800) and full.masks.dtype == torch.bool
    assert routed and all(used for _, used in routed), routed
    assert {name for name, _ in routed} == {"token_attention", "gathered_token_attention"}


# --------------------------------------------------------------------------------------- GPU

# (name, heads, Nq, Nk, C, masked): the decoder attentions of vit_b (T = 9 tokens) and of TINY.
ATTENTION_SHAPES = [
    ("self", 8, 9, 9, 256, True),
    ("token_to_image", 8, 9, 4096, 128, False),
    ("image_to_token", 8, 4096, 9, 128, True),
    ("tiny_token_to_image", 4, 7, 256, 32, False),
    ("head_dim_64", 2, 33, 300, 128, True),
]


def _fp64_attention(q, k, v, heads, mask=None, q_index=None, kv_index=None):
    return decoder_attention.gathered_token_attention_reference(
        q.double(), k.double(), v.double(), heads, mask, q_index, kv_index
    )


def _padding_mask(prompts: int, keys: int) -> torch.Tensor:
    """(prompts, keys) bool: prompt i keeps its first 1 + i % keys keys."""
    lengths = 1 + torch.arange(prompts, device="cuda") % keys
    return torch.arange(keys, device="cuda")[None, :] < lengths[:, None]


def _poison_allocator() -> None:
    """Leave NaN-filled blocks in the caching allocator, so that a kernel that skips a write shows."""
    block = torch.full((1 << 28,), float("nan"), device="cuda")
    del block


@pytest.mark.gpu
@needs_extension
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("prompts", [1, 7, 64])
@pytest.mark.parametrize("shape", ATTENTION_SHAPES, ids=[s[0] for s in ATTENTION_SHAPES])
def test_attention_kernel_matches_float64(shape, prompts, dtype):
    _, heads, nq, nk, channels, masked = shape
    generator = torch.Generator(device="cuda").manual_seed(prompts)
    q, k, v = (torch.randn(prompts, n, channels, generator=generator, device="cuda").to(dtype) for n in (nq, nk, nk))
    mask = _padding_mask(prompts, nk) if masked else None
    _poison_allocator()
    out = torch.ops.promptseg.token_attention(q, k, v, heads, mask)
    assert out.dtype == dtype and out.shape == q.shape and bool(out.isfinite().all())
    assert relative_error(out, _fp64_attention(q, k, v, heads, mask)) <= KERNEL_TOLERANCE[dtype]


@pytest.mark.gpu
@needs_extension
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("prompts", [1, 7, 64, 1000])
def test_gathered_attention_kernel_shares_image_rows(prompts, dtype):
    """Token->image with shared keys/values and image->token with shared queries, 3 images."""
    generator = torch.Generator(device="cuda").manual_seed(prompts)
    tokens = torch.randn(prompts, 9, 128, generator=generator, device="cuda").to(dtype)
    image = torch.randn(3, 4096, 128, generator=generator, device="cuda").to(dtype)
    index = torch.randint(0, 3, (prompts,), generator=generator, device="cuda")
    mask = _padding_mask(prompts, 9)
    _poison_allocator()
    to_image = gathered_token_attention(tokens, image, image, 8, kv_index=index)
    to_token = gathered_token_attention(image, tokens, tokens, 8, mask, q_index=index)
    assert bool(to_image.isfinite().all()) and bool(to_token.isfinite().all())
    for chunk in torch.arange(prompts, device="cuda").split(100):  # float64 references of 100 prompts at a time
        expected = _fp64_attention(tokens[chunk], image, image, 8, kv_index=index[chunk])
        assert relative_error(to_image[chunk], expected) <= KERNEL_TOLERANCE[dtype]
        expected = _fp64_attention(image, tokens[chunk], tokens[chunk], 8, mask[chunk], q_index=index[chunk])
        assert relative_error(to_token[chunk], expected) <= KERNEL_TOLERANCE[dtype]


@pytest.mark.gpu
@needs_extension
def test_attention_kernel_strided_inputs_and_fully_masked_rows():
    qkv = torch.randn(4, 12, 3 * 256, device="cuda", dtype=torch.bfloat16)
    q, k, v = qkv.split(256, dim=-1)  # row stride 768: read in place
    mask = _padding_mask(4, 12)
    out = torch.ops.promptseg.token_attention(q, k, v, 8, mask)
    assert relative_error(out, _fp64_attention(q, k, v, 8, mask)) <= KERNEL_TOLERANCE[torch.bfloat16]
    none = torch.zeros_like(mask)
    assert bool(torch.ops.promptseg.token_attention(q, k, v, 8, none).isnan().all())  # as the reference's softmax


@pytest.mark.gpu
@needs_extension
def test_kernel_input_checks_name_expected_and_given():
    q = torch.randn(2, 5, 48, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="expected head_dim 8, 16, 32 or 64, got 12"):
        torch.ops.promptseg.token_attention(q, q, q, 4)
    with pytest.raises(RuntimeError, match="expected q of dtype bfloat16 or float16, got Float"):
        torch.ops.promptseg.token_attention(q.float(), q.float(), q.float(), 3)
    with pytest.raises(RuntimeError, match=r"expected key_padding_mask of shape \(2, 5\)"):
        torch.ops.promptseg.token_attention(q, q, q, 3, torch.ones(2, 4, dtype=torch.bool, device="cuda"))
    with pytest.raises(RuntimeError, match="expected a contiguous low_res"):
        torch.ops.promptseg.mask_postprocess(q.reshape(2, 5, 6, 8).transpose(2, 3), [8, 8], [9, 9], 8, 0.0, False, False)


@pytest.mark.gpu
@needs_extension
def test_opcheck():
    q = torch.randn(3, 9, 128, device="cuda", dtype=torch.bfloat16)
    image = torch.randn(2, 256, 128, device="cuda", dtype=torch.bfloat16)
    index = torch.tensor([0, 1, 1], device="cuda")
    mask = _padding_mask(3, 9)
    low_res = torch.randn(2, 3, 64, 64, device="cuda", dtype=torch.float16)
    ops = torch.ops.promptseg
    torch.library.opcheck(ops.token_attention.default, (q, q, q, 8, mask))
    torch.library.opcheck(ops.gathered_token_attention.default, (q, image, image, 8, None, None, index))
    torch.library.opcheck(ops.gathered_token_attention.default, (image, q, q, 8, mask, index, None))
    torch.library.opcheck(ops.mask_postprocess.default, (low_res, [200, 256], [300, 400], 256, 0.0, False, True))
    torch.library.opcheck(ops.mask_postprocess.default, (low_res, [256, 131], [1000, 512], 256, 0.5, True, False))


@pytest.mark.gpu
@needs_extension
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("input_size, original_size", [((683, 1024), (1200, 1800)), ((1024, 768), (4000, 3000)), ((1024, 1024), (97, 97))])
def test_mask_postprocess_kernel_matches_reference(dtype, input_size, original_size):
    low_res = (8 * torch.randn(5, 3, 256, 256, device="cuda")).to(dtype)
    _poison_allocator()
    masks, boxes, areas = torch.ops.promptseg.mask_postprocess(low_res, input_size, original_size, 1024, 0.0, True, True)
    expected = mask_postprocess_reference(low_res, input_size, original_size, 1024, return_logits=True).masks
    assert (masks - expected).abs().max() <= 1e-5 * expected.abs().max()
    binary, _, _ = torch.ops.promptseg.mask_postprocess(low_res, input_size, original_size, 1024, 0.0, False, False)
    assert torch.equal(binary, masks > 0)
    differ = binary != (expected > 0)
    assert bool((expected[differ].abs() < 1e-3).all())
    assert torch.equal(boxes, mask_boxes_xyxy(binary)) and torch.equal(areas, mask_areas(binary))


@pytest.mark.gpu
@needs_extension
def test_mask_postprocess_kernel_empty_and_full_masks():
    low_res = torch.cat([torch.full((1, 1, 256, 256), -5.0), torch.full((1, 1, 256, 256), 5.0)], 1).cuda().half()
    masks, boxes, areas = torch.ops.promptseg.mask_postprocess(low_res, [683, 1024], [1200, 1800], 1024, 0.0, False, True)
    assert areas.tolist() == [[0, 1200 * 1800]] and boxes.tolist() == [[[0, 0, 0, 0], [0, 0, 1799, 1199]]]


@pytest.fixture(scope="module")
def bf16_predictors(vit_b_pair, images):
    """(official fp32 SamPredictor on CUDA, promptseg bf16 SamPredictor on CUDA), truck.jpg set."""
    return cuda_predictors(*vit_b_pair, images["truck.jpg"])


@pytest.mark.gpu
@needs_extension
def test_predictor_bf16_fused_matches_official_fp32(bf16_predictors, images):
    official, ours = bf16_predictors
    assert ours._fused()
    height, width = images["truck.jpg"].shape[:2]
    prompts = _mixed_prompts(height, width, 10, seed=1)
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
    assert not reference._fused()
    height, width = images["truck.jpg"].shape[:2]
    batch = _mixed_prompts(height, width, prompts, seed=prompts)
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
    prompts = _mixed_prompts(height, width, 5, seed=2)
    for multimask, return_logits in ((True, False), (False, True)):
        for prompt in prompts:
            ours.use_cuda_graphs = False
            eager = ours.predict(**prompt, multimask_output=multimask, return_logits=return_logits)
            ours.use_cuda_graphs = True
            graphed = [ours.predict(**prompt, multimask_output=multimask, return_logits=return_logits) for _ in range(2)]
            for result in graphed:
                for actual, expected in zip(result, eager):
                    assert actual.dtype == expected.dtype and actual.shape == expected.shape
                    np.testing.assert_array_equal(actual, expected)
    # A second image of the same size reuses the graphs (the image table is copied in).
    ours.set_image(images["truck.jpg"][::-1].copy())
    graphs = dict(ours._click_graphs._buckets)
    ours.predict(**prompts[0])
    assert all(ours._click_graphs._buckets.get(key) is bucket for key, bucket in graphs.items())
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
