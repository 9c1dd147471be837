"""One EXIF rule everywhere: a phone-style JPEG stored sideways with EXIF orientation 6 gives the
same, upright masks through ``promptseg predict``, ``promptseg amg`` (local and Ray engines) and the
annotation tool (click and pre-fill), each equal to the Python API on the upright pixels.

Before promptseg.io, only the annotation tool applied the orientation: ``promptseg amg`` segmented
the stored, sideways pixels. Bundled model, one 256 x 192 synthetic scene, a 4 x 4 grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import promptseg.cli
from promptseg.amg.rle import encode_rle
from promptseg.automatic import SamAutomaticMaskGenerator
from promptseg.bundled import build_bundled_sam
from promptseg.data.synthetic import generate_scene
from promptseg.masks import deepest_points
from promptseg.predictor import SamPredictor

AMG = {"points_per_side": 4, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}
AMG_ARGUMENTS = ["--points-per-side", "4", "--pred-iou-thresh", "0.5", "--stability-score-thresh", "0.8"]
HEIGHT, WIDTH = 256, 192  # upright: a portrait photo
NAME = "photo.jpg"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> dict:
    """A folder holding one JPEG stored landscape (192 x 256 pixels) with EXIF orientation 6, the
    upright pixels as Pillow's ``exif_transpose`` shows them, and a click on an object."""
    scene = generate_scene(5, size=256)
    upright = scene.image[:, :WIDTH]
    folder = tmp_path_factory.mktemp("rotated") / "images"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(folder / NAME, quality=95, exif=exif.tobytes())
    with Image.open(folder / NAME) as stored:
        assert stored.size == (HEIGHT, WIDTH), "stored sideways"
        pixels = np.array(ImageOps.exif_transpose(stored).convert("RGB"))
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    objects = torch.from_numpy(scene.masks[:, :, :WIDTH])
    largest = int(objects.flatten(1).sum(1).argmax())
    x, y = deepest_points(objects[largest : largest + 1])[0].tolist()
    return {"folder": folder, "path": folder / NAME, "pixels": pixels, "point": (int(x), int(y))}


@pytest.fixture(scope="module")
def model():
    return build_bundled_sam()


@pytest.fixture(scope="module")
def expected_click(photo, model) -> np.ndarray:
    """(H, W) bool: the Python API's single mask for the click, on the upright pixels."""
    predictor = SamPredictor(model)
    predictor.set_image(photo["pixels"])
    masks, _, _ = predictor.predict(np.array([photo["point"]], float), np.array([1]), multimask_output=False)
    assert masks.shape == (1, HEIGHT, WIDTH) and masks[0].any()
    return masks[0]


@pytest.fixture(scope="module")
def expected_amg(photo, model) -> list[dict]:
    """The Python API's automatic masks on the upright pixels, as COCO RLEs."""
    records = SamAutomaticMaskGenerator(model, **AMG).generate(photo["pixels"])
    assert records, "the grid should find at least one object"
    masks = torch.from_numpy(np.stack([record["segmentation"] for record in records]))
    return encode_rle(masks).to_coco()


@pytest.fixture(scope="module")
def local_amg(photo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("amg_local")
    assert promptseg.cli.main(["amg", str(photo["folder"]), "--out", str(out), *AMG_ARGUMENTS]) == 0
    return out


def _record(out: Path) -> dict:
    return json.loads((out / "records" / f"{NAME}.json").read_text())


def test_predict_command_segments_the_upright_image(photo, expected_click, tmp_path):
    x, y = photo["point"]
    assert promptseg.cli.main(["predict", str(photo["path"]), "--point", f"{x},{y}", "--out", str(tmp_path)]) == 0
    mask = np.array(Image.open(tmp_path / "mask_0.png")) > 0
    assert mask.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(mask, expected_click)


def test_amg_command_segments_the_upright_image(local_amg, expected_amg):
    record = _record(local_amg)
    assert (record["height"], record["width"]) == (HEIGHT, WIDTH)
    assert [mask["segmentation"] for mask in record["masks"]] == expected_amg
    with Image.open(local_amg / "overlays" / f"{NAME}.png") as overlay:
        assert overlay.size == (WIDTH, HEIGHT)


def test_annotation_tool_serves_and_segments_the_upright_image(photo, model, expected_click, expected_amg, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    mask_utils = pytest.importorskip("pycocotools.mask")
    from fastapi.testclient import TestClient

    from promptseg.annotate import AnnotationService, create_app

    service = AnnotationService(photo["folder"], tmp_path / "annotations.json", model, prefetch=False)
    try:
        client = TestClient(create_app(service))
        listed = client.get("/api/images").json()["images"]
        assert [(image["width"], image["height"]) for image in listed] == [(WIDTH, HEIGHT)]
        image_id = listed[0]["id"]
        click = client.post(f"/api/images/{image_id}/predict",
                            json={"points": [list(photo["point"])], "labels": [1], "multimask": False})
        assert click.status_code == 200, click.text
        rle = click.json()["masks"][0]
        mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
        np.testing.assert_array_equal(mask, expected_click)
        prefill = client.post(f"/api/images/{image_id}/prefill", json=AMG)
        assert prefill.status_code == 200, prefill.text
        assert [proposal["rle"] for proposal in prefill.json()["proposals"]] == expected_amg
    finally:
        service.close()


def test_ray_engine_segments_the_upright_image(photo, local_amg, tmp_path):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2, log_to_driver=False,
                 logging_level="WARNING")
    try:
        arguments = ["amg", str(photo["folder"]), "--out", str(tmp_path), "--engine", "ray", "--workers", "1"]
        assert promptseg.cli.main([*arguments, *AMG_ARGUMENTS]) == 0
    finally:
        if started:
            ray.shutdown()
    record, local = _record(tmp_path), _record(local_amg)
    assert (record["height"], record["width"]) == (HEIGHT, WIDTH)
    assert [mask["segmentation"] for mask in record["masks"]] == [mask["segmentation"] for mask in local["masks"]]
    assert (tmp_path / "failures.jsonl").read_text() == ""
