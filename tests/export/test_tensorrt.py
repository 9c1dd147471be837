"""TensorRT: the pure-Python pieces (cache keys and paths, shape profiles, weights hash) everywhere; engine
builds and predictions only where ``tensorrt`` imports and a GPU is visible (skipped otherwise)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from promptseg.build import construct_sam
from promptseg.export import describe_onnx, export_onnx_batched_decoder, export_onnx_encoder
from promptseg.export.profiles import EngineLimits, decoder_profile, encoder_profile
from promptseg.export.tensorrt import (
    TensorRTUnavailableError,
    default_cache_dir,
    engine_key,
    engine_path,
    import_tensorrt,
    timing_cache_path,
    weights_hash,
)
from tests._support import TINY

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
KEY_FIELDS = {
    "kind": "encoder",
    "weights_digest": "ab" * 32,
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "tensorrt_version": "10.3.0",
    "precision": "fp16",
    "profile": {"images": ((1, 3, 1024, 1024), (1, 3, 1024, 1024), (4, 3, 1024, 1024))},
}


def test_engine_key_names_kind_precision_weights_and_changes_with_every_field():
    key = engine_key(**KEY_FIELDS)
    assert key == engine_key(**KEY_FIELDS)
    assert key.startswith("encoder-fp16-abababababababab-") and len(key.split("-")[-1]) == 12
    changes = {
        "kind": "decoder",
        "weights_digest": "cd" * 32,
        "gpu_name": "NVIDIA A100-SXM4-40GB",
        "tensorrt_version": "10.4.0",
        "precision": "bf16",
        "profile": {"images": ((1, 3, 1024, 1024), (2, 3, 1024, 1024), (4, 3, 1024, 1024))},
    }
    for field, value in changes.items():
        assert engine_key(**{**KEY_FIELDS, field: value}) != key, field


def test_engine_key_rejects_unknown_precision_and_kind():
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'fp16', 'bf16'\], got 'int8'"):
        engine_key(**{**KEY_FIELDS, "precision": "int8"})
    with pytest.raises(ValueError, match="kind must be a lower-case word"):
        engine_key(**{**KEY_FIELDS, "kind": "../encoder"})


def test_cache_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTSEG_CACHE_DIR", str(tmp_path / "engines"))
    assert default_cache_dir() == tmp_path / "engines"
    assert engine_path("encoder-fp16-x") == tmp_path / "engines" / "encoder-fp16-x.engine"
    timing_cache = timing_cache_path("NVIDIA H100 80GB HBM3", "10.3.0", tmp_path)
    assert timing_cache == tmp_path / "timing-nvidia-h100-80gb-hbm3-trt10.3.0.cache"
    monkeypatch.delenv("PROMPTSEG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "promptseg" / "tensorrt"


def test_weights_hash_follows_every_weight_and_dtype(tiny_pair):
    _, model = tiny_pair
    digest = weights_hash(model)
    assert len(digest) == 64 and digest == weights_hash(model)
    changed = construct_sam(TINY)
    changed.load_state_dict(model.state_dict())
    assert weights_hash(changed) == digest
    with torch.no_grad():
        changed.mask_decoder.iou_token.weight[0, 0] += 1e-3
    assert weights_hash(changed) != digest
    assert weights_hash(construct_sam(TINY).to(torch.bfloat16)) != weights_hash(construct_sam(TINY))


def test_engine_limits_are_checked_and_capped():
    with pytest.raises(ValueError, match="opt_prompts <= max_prompts, got opt=16, max=8"):
        EngineLimits(max_prompts=8)
    limits = EngineLimits.up_to(2, 8, 4)
    assert (limits.max_images, limits.opt_images, limits.max_prompts, limits.opt_prompts) == (2, 1, 8, 8)
    assert (limits.max_points, limits.opt_points) == (4, 2)


def test_profiles_cover_the_exported_graphs_inputs(tiny_pair, tmp_path):
    """Every profiled input exists with the profile's rank and fixed dims; dynamic dims range from 1 up."""
    _, model = tiny_pair
    export_onnx_encoder(model, tmp_path / "encoder.onnx")
    export_onnx_batched_decoder(model, tmp_path / "decoder.onnx")
    limits = EngineLimits(max_images=3, max_prompts=32, opt_prompts=8, max_points=10, opt_points=3)
    profiles = {
        "encoder.onnx": encoder_profile(TINY.image_size, limits),
        "decoder.onnx": decoder_profile(TINY.prompt_embed_dim, TINY.embedding_size, limits),
    }
    for file, profile in profiles.items():
        inputs = {value["name"]: value["shape"] for value in describe_onnx(tmp_path / file)["inputs"]}
        assert set(profile) == set(inputs), file
        for name, (smallest, optimal, largest) in profile.items():
            for axis, dim in enumerate(inputs[name]):
                if isinstance(dim, int):
                    assert smallest[axis] == optimal[axis] == largest[axis] == dim, (file, name, axis)
                else:
                    assert 1 == smallest[axis] <= optimal[axis] <= largest[axis], (file, name, axis)
    decoder = profiles["decoder.onnx"]
    assert decoder["point_coords"] == ((1, 1, 2), (8, 3, 2), (32, 10, 2))
    assert decoder["image_embeddings"][2] == (3, 64, 16, 16)


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed; this checks the error raised without it")
def test_missing_tensorrt_is_a_clear_error():
    expected = r"TensorRT is not installed: `import tensorrt` failed .*pip install"
    with pytest.raises(TensorRTUnavailableError, match=expected):
        import_tensorrt()


def _tensorrt_and_gpu():
    tensorrt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt-cu12)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines need a CUDA GPU; none is visible")
    return tensorrt


@pytest.mark.gpu
@pytest.mark.parametrize("precision, logit_tolerance", [("fp32", 1e-3), ("fp16", 3e-2)])
def test_tensorrt_predictor_matches_sam_predictor_and_reuses_cached_engines(
    tiny_pair, images, tmp_path, precision, logit_tolerance
):
    _tensorrt_and_gpu()
    from promptseg import SamPredictor
    from promptseg.export.tensorrt import TensorRTPredictor, build_sam_engines

    _, cpu_model = tiny_pair
    model = construct_sam(TINY)
    model.load_state_dict(cpu_model.state_dict())
    model = model.cuda()
    limits = EngineLimits(max_images=2, max_prompts=4, opt_prompts=2, max_points=8)
    predictor = TensorRTPredictor.from_model(model, precision=precision, limits=limits, cache_dir=tmp_path)
    reference = SamPredictor(model)
    image = images["truck.jpg"]
    predictor.set_image(image)
    reference.set_image(image)
    height, width = image.shape[:2]
    prompts = [
        {"point_coords": np.array([[0.4 * width, 0.5 * height]]), "point_labels": np.array([1])},
        {"box": np.array([0.1 * width, 0.2 * height, 0.6 * width, 0.7 * height])},
    ]
    _, scores, logits = reference.predict_many(prompts)
    _, engine_scores, engine_logits = predictor.predict_many(prompts)
    assert np.abs(engine_logits - logits).max() <= logit_tolerance * np.abs(logits).max()
    assert np.abs(engine_scores - scores).max() <= logit_tolerance * 10

    engines = build_sam_engines(model, precision=precision, limits=limits, cache_dir=tmp_path)
    built = {path: path.stat().st_mtime_ns for path in (engines.encoder, engines.decoder)}
    again = build_sam_engines(model, precision=precision, limits=limits, cache_dir=tmp_path)
    assert {path: path.stat().st_mtime_ns for path in (again.encoder, again.decoder)} == built
    assert list(tmp_path.glob("timing-*.cache"))
