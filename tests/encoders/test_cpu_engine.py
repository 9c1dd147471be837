"""The CPU engines (promptseg.encoders.auto, .cache, .onnxruntime; promptseg.export.prepare_engine):
ONNX Runtime behind the same predictor API, the export cache and its keys, and the automatic choice.
The bundled model's export is made once per session (the ``cpu_engine_cache`` fixture)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import promptseg
from promptseg.build import build_sam
from promptseg.bundled import build_bundled_sam, bundled_checkpoint
from promptseg.encoders import ModuleImageEncoder, OnnxRuntimeImageEncoder, choose_engine
from promptseg.encoders.cache import DESCRIPTION_FILE, entry_for, find_entry
from promptseg.export import prepare_engine
from tests._support import relative_error

pytest.importorskip("onnxruntime")


@pytest.fixture
def cached(cpu_engine_cache, monkeypatch):
    """PROMPTSEG_CACHE_DIR pointing at the session's cache that holds the bundled model's export."""
    monkeypatch.setenv("PROMPTSEG_CACHE_DIR", str(cpu_engine_cache))
    monkeypatch.delenv("PROMPTSEG_CPU_ENGINE", raising=False)
    return cpu_engine_cache


@pytest.fixture(scope="module")
def photo(images):
    return images["dog.jpg"][::4, ::4].copy()


def test_onnxruntime_engine_gives_the_torch_models_results(cached, photo):
    model = promptseg.build_sam(bundled_checkpoint(), device="cpu", engine="onnxruntime")
    engine = promptseg.SamPredictor(model)
    reference = promptseg.SamPredictor(build_bundled_sam(device="cpu", engine="torch"))
    assert isinstance(engine.encoder, OnnxRuntimeImageEncoder) and engine.encoder.precision == "fp32"
    assert isinstance(reference.encoder, ModuleImageEncoder)
    assert "onnxruntime: asked for" in repr(engine) and "torch: asked for (engine='torch')" in repr(reference)
    engine.set_image(photo)
    reference.set_image(photo)
    assert relative_error(engine.get_image_embedding(), reference.get_image_embedding()) <= 1e-4
    clicks = dict(point_coords=np.array([[60.0, 40.0], [20.0, 70.0]]), point_labels=np.array([1, 0]))
    masks, scores, logits = engine.predict(**clicks)
    expected_masks, expected_scores, expected_logits = reference.predict(**clicks)
    assert relative_error(logits, expected_logits) <= 1e-4
    assert np.abs(scores - expected_scores).max() <= 1e-4
    assert (masks != expected_masks).mean() <= 1e-3  # only pixels with a logit at 0 +- rounding may differ
    many = engine.predict_many([clicks, {"box": np.array([5.0, 5.0, 90.0, 60.0])}])
    expected_many = reference.predict_many([clicks, {"box": np.array([5.0, 5.0, 90.0, 60.0])}])
    assert np.abs(many[1] - expected_many[1]).max() <= 1e-4


def test_the_automatic_choice_and_its_override(cached, monkeypatch, tmp_path):
    model = build_bundled_sam(device="cpu")
    choice = choose_engine(model)  # its export is cached, but torch measured faster
    assert choice.engine == "torch" and "fastest exact CPU engine measured" in choice.reason
    assert isinstance(promptseg.SamPredictor(model).encoder, ModuleImageEncoder)
    monkeypatch.setenv("PROMPTSEG_CPU_ENGINE", "onnxruntime")
    choice = choose_engine(model)
    assert choice.engine == "onnxruntime" and choice.entry is not None
    assert isinstance(promptseg.SamPredictor(model).encoder, OnnxRuntimeImageEncoder)
    monkeypatch.setenv("PROMPTSEG_CPU_ENGINE", "torch")
    assert choose_engine(model).engine == "torch" and isinstance(promptseg.SamPredictor(model).encoder, ModuleImageEncoder)
    monkeypatch.setenv("PROMPTSEG_CPU_ENGINE", "onnxruntime-int8")
    assert promptseg.SamPredictor(model).encoder.precision == "int8"
    monkeypatch.setenv("PROMPTSEG_CPU_ENGINE", "tensorflow")
    with pytest.raises(ValueError, match="PROMPTSEG_CPU_ENGINE must be one of"):
        choose_engine(model)
    monkeypatch.delenv("PROMPTSEG_CPU_ENGINE")
    monkeypatch.setenv("PROMPTSEG_CACHE_DIR", str(tmp_path))  # nothing cached: torch, and why
    choice = choose_engine(model)
    assert choice.engine == "torch" and "fastest exact CPU engine measured" in choice.reason
    assert choose_engine(build_bundled_sam(device="cpu", dtype=torch.bfloat16)).engine == "torch"
    # A model not built by build_sam keeps its module, with no choice made.
    predictor = promptseg.SamPredictor(promptseg.build.construct_sam(promptseg.configs.VIT_TINY))
    assert predictor.engine_choice is None and "engine=" not in repr(predictor)


def test_an_onnxruntime_engine_that_is_not_exported_or_cannot_run(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMPTSEG_CACHE_DIR", str(tmp_path))
    model = build_sam(bundled_checkpoint(), device="cpu", engine="onnxruntime")  # records, exports nothing
    with pytest.raises(FileNotFoundError, match="prepare_engine"):
        promptseg.SamPredictor(model)
    monkeypatch.setenv("PROMPTSEG_CPU_ENGINE", "onnxruntime")  # the setting, unlike the argument, falls back
    choice = choose_engine(build_bundled_sam(device="cpu"))
    assert choice.engine == "torch" and "PROMPTSEG_CPU_ENGINE=onnxruntime, but no onnxruntime export" in choice.reason
    with pytest.raises(ValueError, match="runs float32 models on the CPU"):
        build_sam(bundled_checkpoint(), device="cpu", dtype=torch.bfloat16, engine="onnxruntime")
    with pytest.raises(ValueError, match="engine must be one of"):
        build_sam(bundled_checkpoint(), engine="openvino")


def test_the_cache_entry_is_keyed_described_and_reused(cached, monkeypatch):
    model = build_bundled_sam(device="cpu")
    entry = find_entry(model)
    assert entry is not None and entry.folder.name.startswith("vit_tiny-")
    description = json.loads((entry.folder / DESCRIPTION_FILE).read_text())
    assert description["opset"] == 17 and set(description["versions"]) == {"promptseg", "torch", "onnx"}
    assert description["int8"]["mean_mask_iou"] >= 0.98
    before = {path.name: path.stat().st_mtime_ns for path in entry.folder.iterdir()}
    promptseg.build.record_engine(model, "onnxruntime-int8")
    prepare_engine(model)  # cached: nothing is written again
    assert {path.name: path.stat().st_mtime_ns for path in entry.folder.iterdir()} == before
    assert not [path for path in entry.folder.parent.iterdir() if path.name.startswith(".")]  # no scratch left
    changed = build_bundled_sam(device="cpu")
    with torch.no_grad():
        changed.mask_decoder.iou_prediction_head.layers[0].bias.add_(1.0)
    assert find_entry(changed) is None and entry_for(changed).folder != entry.folder


def test_the_command_line_takes_and_states_the_engine(cached, tmp_path, capsys, monkeypatch):
    from promptseg.cli import main
    from tests._support import IMAGES_DIR

    photo = tmp_path / "dog.png"
    from PIL import Image

    Image.open(IMAGES_DIR / "dog.jpg").reduce(4).save(photo)
    assert main(["predict", str(photo), "--engine", "onnxruntime", "--point", "60,40", "--out", str(tmp_path / "p")]) == 0
    assert "image encoder: onnxruntime: asked for (engine='onnxruntime')" in capsys.readouterr().out
    code = main(["amg", str(photo), "--engine", "onnxruntime", "--points-per-side", "4", "--out", str(tmp_path / "a")])
    assert code == 0 and list((tmp_path / "a").glob("*.json"))
    monkeypatch.setenv("PROMPTSEG_CPU_ENGINE", "torch")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "PROMPTSEG_CPU_ENGINE=torch" in out and "bundled model -> torch: asked for (PROMPTSEG_CPU_ENGINE=torch)" in out
