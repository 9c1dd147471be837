"""Every command takes a SAM 2.1 model: ``--model sam2.1_hiera_t`` (random weights) for predict, amg
(local and Ray engines), find, zeroshot, annotate and export. The commands build their model with
``build_sam2_model``; here it hands them one Hiera-t at a 256 input (the code paths of 1024, cheaper),
built once. The Ray engine's actor is run in this process (a Ray cluster would rebuild the model at 1024)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from promptseg.cli import main
from promptseg.data.synthetic import generate_scene
from promptseg.sam2.model_types import SAM2_CHOICES, build_sam2_model, is_sam2_model_type

MODEL = ["--model", "sam2.1_hiera_t"]
LOOSE = ["--points-per-side", "3", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture
def sam2_cli(sam2_small, monkeypatch):
    """The commands' SAM 2 models are ``sam2_small``; records which model types they asked for."""
    import promptseg.cli.common
    import promptseg.sam2.model_types

    asked = []

    def build(model_type, checkpoint=None, device=None, dtype=None):
        asked.append((model_type, checkpoint))
        return sam2_small

    monkeypatch.setattr(promptseg.cli.common, "build_sam2_model", build)
    monkeypatch.setattr(promptseg.sam2.model_types, "build_sam2_model", build)
    return asked


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam2_scenes")
    for seed in (1, 2):  # named by integer ids, as the zero-shot proposals want
        Image.fromarray(generate_scene(seed, size=160).image).save(folder / f"{seed}.png")
    return folder


def test_model_types():
    assert SAM2_CHOICES == sorted(f"{g}_hiera_{s}" for g in ("sam2", "sam2.1") for s in ("b+", "l", "s", "t"))
    assert is_sam2_model_type("sam2.1_hiera_tiny") and not is_sam2_model_type("vit_b")
    with pytest.raises(ValueError, match="unknown SAM 2 model type"):
        build_sam2_model("sam3_hiera_t")


def test_predict(sam2_cli, scenes, tmp_path, capsys):
    assert main(["predict", str(scenes / "1.png"), *MODEL, "--point", "80,80", "--box", "10,10,120,150",
                 "--out", str(tmp_path)]) == 0
    assert sam2_cli == [("sam2.1_hiera_t", None)]
    result = json.loads((tmp_path / "result.json").read_text())
    assert len(result["masks"]) == 1 and "sam2.1_hiera_t" in capsys.readouterr().out


def test_amg_local_engine(sam2_cli, scenes, tmp_path):
    assert main(["amg", str(scenes), *MODEL, "--out", str(tmp_path), *LOOSE]) == 0
    records = json.loads((tmp_path / "records" / "1.png.json").read_text())
    assert records["masks"] and all(isinstance(v, float) for v in records["masks"][0]["bbox"])


def test_amg_ray_engine(sam2_cli, scenes, tmp_path, monkeypatch):
    """The CLI hands the model type to the Ray pipeline; its actor builds the SAM 2 model and generates."""
    import promptseg.distributed
    from promptseg.distributed.worker import MaskWorker, WorkerSpec

    from promptseg.distributed.writer import RunSummary

    calls = []

    def generate_masks(*args, **kwargs):
        calls.append(kwargs)
        return RunSummary(2, 0, 2, 4, 0, 1.0, tmp_path / "failures.jsonl")

    monkeypatch.setattr(promptseg.distributed, "generate_masks", generate_masks)
    assert main(["amg", str(scenes), *MODEL, "--out", str(tmp_path), "--engine", "ray", *LOOSE]) == 0
    assert calls[0]["model"] == "sam2.1_hiera_t" and calls[0]["settings"].points_per_side == 3
    spec = WorkerSpec("sam2.1_hiera_t", None, "cpu", "float32", 1, calls[0]["settings"].generator_kwargs())
    worker = MaskWorker(spec)
    assert sam2_cli[-1] == ("sam2.1_hiera_t", None)
    image = np.asarray(Image.open(scenes / "2.png").convert("RGB"))
    records = worker.generator.generate_batch([image], batch_size=1)[0]
    assert records and records[0]["segmentation"].shape == image.shape[:2]


def test_find(sam2_cli, scenes, tmp_path):
    assert main(["find", str(scenes / "1.png"), "--text", "red star", *MODEL, "--out", str(tmp_path),
                 "--threshold", "-1", "--points-per-side", "3"]) == 0
    assert any(tmp_path.iterdir())


def test_zeroshot(sam2_cli, scenes, tmp_path):
    assert main(["zeroshot", "edges", str(scenes), *MODEL, "--out", str(tmp_path / "edges"), "--points-per-side", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "edges").glob("*.png")) == ["1.png", "2.png"]
    out = tmp_path / "proposals.json"
    assert main(["zeroshot", "proposals", str(scenes), *MODEL, "--out", str(out), *LOOSE, "--k", "3"]) == 0
    assert json.loads(out.read_text())


def test_annotate(sam2_cli, scenes, tmp_path, monkeypatch):
    """The server's clicks and pre-fill on a SAM 2 model."""
    pytest.importorskip("fastapi")
    import uvicorn

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    assert main(["annotate", str(scenes), *MODEL, "--out", str(tmp_path / "out.json"), "--no-prefetch"]) == 0
    service = apps[0].state.service
    image_id = service.list_images()[0]["id"]
    answer = service.predict(image_id, {"points": [[60, 60]], "labels": [1]})
    assert answer["masks"] and len(answer["scores"]) == 3
    proposals = service.prefill(image_id, {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0})
    assert "proposals" in proposals
    service.close()


def test_export_onnx(sam2_cli, tmp_path):
    pytest.importorskip("onnxruntime")
    assert main(["export", "onnx", *MODEL, "--device", "cpu", "--out", str(tmp_path)]) == 0
    description = json.loads((tmp_path / "export.json").read_text())
    assert description["model_family"] == "sam2" and set(description["graphs"]) == {"encoder", "decoder_batched"}
    assert description["image_size"] == 256
