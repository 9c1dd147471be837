"""``promptseg zeroshot edges|proposals|instances`` and ``promptseg evaluate ...`` end to end on a written
synthetic COCO folder (tiny grids), with resume, the JSON outputs and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from promptseg.cli import main
from promptseg.data.synthetic import HELD_OUT_SEED
from promptseg.data.synthetic_coco import write_synthetic_coco

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("zeroshot_cli")
    instances = write_synthetic_coco(root / "data", [(HELD_OUT_SEED, 14, 300), (HELD_OUT_SEED, 14, 301)])
    dataset = json.loads(instances.read_text())
    detections = [
        {"image_id": a["image_id"], "bbox": a["bbox"], "score": 0.9, "category_id": a["category_id"]}
        for a in dataset["annotations"]
    ]
    (root / "dets.json").write_text(json.dumps(detections))
    return root


def test_edges_then_evaluate(data, capsys):
    images, out = data / "data" / "images", data / "edges"
    assert main(["zeroshot", "edges", str(images), "--out", str(out), "--points-per-side", "3"]) == 0
    maps = sorted(out.glob("*.png"))
    assert [p.name for p in maps] == sorted(p.name for p in images.iterdir())
    assert np.asarray(Image.open(maps[0])).shape == (256, 256)
    before = maps[0].stat().st_mtime_ns
    assert main(["zeroshot", "edges", str(images), "--out", str(out)]) == 0
    assert "2 already done" in capsys.readouterr().out and maps[0].stat().st_mtime_ns == before
    assert main(["evaluate", "edges", "--gt", str(data / "data" / "boundaries"), "--pred", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ods_f" in printed and "ois_f" in printed and "ap" in printed
    report = json.loads((data / "edges.eval.json").read_text())
    assert report["task"] == "edges" and 0.0 <= report["metrics"]["ods_f"] <= 1.0 and report["metrics"]["images"] == 2


def test_proposals_then_evaluate(data, capsys):
    images, out = data / "data" / "images", data / "proposals.json"
    args = ["zeroshot", "proposals", str(images), "--out", str(out), "--points-per-side", "3", "--k", "5"]
    assert main(args) == 0
    results = json.loads(out.read_text())
    assert results and {r["image_id"] for r in results} <= {1, 2} and all(r["category_id"] == 1 for r in results)
    assert max(sum(r["image_id"] == i for r in results) for i in (1, 2)) <= 5
    assert main(args) == 0 and "2 already done" in capsys.readouterr().out
    assert json.loads(out.read_text()) == results
    metrics_file = data / "ar.json"
    assert main(["evaluate", "proposals", "--gt", str(data / "data" / "instances.json"), "--pred", str(out), "--out", str(metrics_file)]) == 0
    assert "AR@100" in capsys.readouterr().out
    assert 0.0 <= json.loads(metrics_file.read_text())["metrics"]["AR@1000"] <= 1.0


def test_instances_then_evaluate(data, capsys):
    images, out = data / "data" / "images", data / "segm.json"
    args = ["zeroshot", "instances", str(images), "--detections", str(data / "dets.json"), "--out", str(out)]
    assert main(args) == 0
    results = json.loads(out.read_text())
    detections = json.loads((data / "dets.json").read_text())
    assert [(r["image_id"], r["category_id"], r["score"]) for r in results] == [
        (d["image_id"], d["category_id"], d["score"]) for d in detections
    ]
    assert main(["evaluate", "instances", "--gt", str(data / "data" / "instances.json"), "--pred", str(out)]) == 0
    assert "AP50" in capsys.readouterr().out
    assert json.loads((data / "segm.json.eval.json").read_text())["metrics"]["AP"] > 0.3


def test_bad_input_exits_with_a_message(data, tmp_path, capsys):
    named = tmp_path / "named"
    named.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(named / "cat.png")
    with pytest.raises(SystemExit):
        main(["zeroshot", "instances", str(named), "--detections", str(data / "dets.json"), "--out", str(tmp_path / "s.json")])
    assert "cannot tell the image id of cat.png" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["zeroshot", "edges", str(tmp_path / "missing"), "--out", str(tmp_path / "e")])
    assert "image folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "edges", "--gt", str(data / "data" / "boundaries"), "--pred", str(named)])
    assert "have no edge map" in capsys.readouterr().err
