"""Bad files never stop the annotation server: unreadable files in IMAGE_DIR are listed as unavailable with
the reason and the server starts; a file that turns out unreadable later answers 4xx; a link swapped in
after start-up is not followed out of the folder; the output file keeps its mode, and the temporary
files of killed saves are removed at start-up. Each test names the failure it guards against."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("pycocotools")
from fastapi.testclient import TestClient  # noqa: E402

from promptseg.annotate import AnnotationService, create_app  # noqa: E402
from promptseg.bundled import build_bundled_sam  # noqa: E402
from promptseg.data.synthetic import generate_scene  # noqa: E402
from tests.annotate import _bad_files as bad  # noqa: E402

JSON = {"content-type": "application/json"}
SQUARE = {"polygon": [[2, 2, 20, 2, 20, 20, 2, 20]], "category": "square"}


@pytest.fixture(scope="module")
def model():
    return build_bundled_sam()


@pytest.fixture(scope="module")
def scene_image():
    return generate_scene(1).image[:64, :64].copy()


def good_folder(folder: Path, scene_image: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene_image).save(folder / "a_good.png")
    Image.fromarray(scene_image).save(folder / "b_good.jpg", quality=90)
    return folder


def serve(folder: Path, out: Path, model, **options):
    service = AnnotationService(folder, out, model, prefetch=False, **options)
    return service, TestClient(create_app(service))


def test_unreadable_files_are_listed_as_unavailable_and_the_server_starts(tmp_path, model, scene_image):
    """Guards: `annotate` did not start at all when IMAGE_DIR held a corrupt PNG, a PNG header claiming
    12000 x 12000 with no pixel data, a decompression bomb, a zero-byte or a non-image file (a raw
    traceback from annotate/images.py)."""
    folder = good_folder(tmp_path / "images", scene_image)
    names = [write(folder) for write in bad.UNREADABLE]
    service, client = serve(folder, tmp_path / "out.json", model)
    try:
        listed = client.get("/api/images").json()
        assert [i["file_name"] for i in listed["images"]] == ["a_good.png", "b_good.jpg"]
        reasons = {f["file_name"]: f["reason"] for f in listed["unavailable"]}
        assert sorted(reasons) == sorted(names)
        assert "not an image" in reasons["corrupt.png"] and "not an image" in reasons["notes.jpg"]
        assert "over the limit" in reasons["huge_header.png"] and "12000x12000" in reasons["huge_header.png"]
        assert "pixel limit" in reasons["bomb.png"] and "empty" in reasons["empty.png"]
        assert listed["progress"]["total"] == 2
        assert [i["file_name"] for i in json.loads((tmp_path / "out.json").read_text())["images"]] == ["a_good.png", "b_good.jpg"]
        assert client.post("/api/images/1/annotations", json=SQUARE).status_code == 200
    finally:
        service.close()


def test_the_command_starts_and_names_each_unreadable_file(tmp_path, scene_image, monkeypatch, capsys):
    """Guards: the command printed a traceback and exited on the first unreadable file."""
    import uvicorn

    from promptseg.cli import main

    folder = good_folder(tmp_path / "images", scene_image)
    bad.corrupt_png(folder)
    bad.huge_header_png(folder)
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(app))
    assert main(["annotate", str(folder), "--out", str(tmp_path / "out.json")]) == 0
    err = capsys.readouterr().err
    assert "unavailable: corrupt.png: not an image" in err and "unavailable: huge_header.png: 12000x12000" in err
    assert "Traceback" not in err and len(calls) == 1


def test_a_truncated_image_gives_4xx_on_get_predict_and_prefill_and_is_marked(tmp_path, model, scene_image):
    """Guards: a truncated image with a valid header gave 500 on GET, predict and prefill (its header
    reads, so it is listed; its pixels do not)."""
    folder = good_folder(tmp_path / "images", scene_image)
    bad.truncated_png(folder, "c_truncated.png")
    service, client = serve(folder, tmp_path / "out.json", model)
    try:
        image = next(i for i in client.get("/api/images").json()["images"] if i["file_name"] == "c_truncated.png")
        assert image["unavailable"] is None and (image["width"], image["height"]) == (64, 48)
        number = image["id"]
        for response in (
            client.get(f"/api/images/{number}"),
            client.post(f"/api/images/{number}/predict", json={"points": [[5, 5]], "labels": [1]}),
            client.post(f"/api/images/{number}/prefill", json={"points_per_side": 2}),
        ):
            assert response.status_code == 422, response.text
            assert "c_truncated.png" in response.json()["error"] and "truncated" in response.json()["error"]
        marked = next(i for i in client.get("/api/images").json()["images"] if i["id"] == number)
        assert "truncated" in marked["unavailable"]
        assert client.get("/api/images/1").status_code == 200  # the others are served
    finally:
        service.close()


def test_the_listing_reads_headers_only(tmp_path, model, scene_image, monkeypatch):
    """Guards: start-up decoded every image (``image.getexif()`` on a PNG reads the whole file), so a
    folder of large photos took minutes to list; a listing reads headers only."""
    from PIL import ImageFile

    folder = good_folder(tmp_path / "images", scene_image)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the displayed size swaps
    Image.fromarray(scene_image[:, :40]).save(folder / "c_rotated.png", exif=exif)
    loads = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: loads.append(image.format) or original(image))
    service = AnnotationService(folder, tmp_path / "out.json", model, prefetch=False)
    try:
        assert loads == []
        sizes = {i["file_name"]: (i["width"], i["height"]) for i in service.list_images()}
        assert sizes == {"a_good.png": (64, 64), "b_good.jpg": (64, 64), "c_rotated.png": (64, 40)}
    finally:
        service.close()


def test_a_link_swapped_in_after_start_up_is_not_followed_out_of_the_folder(tmp_path, model, scene_image):
    """Guards: the outside-path check ran only at start-up, so a link swapped in for a listed file later
    served a file from outside IMAGE_DIR."""
    folder = good_folder(tmp_path / "images", scene_image)
    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(secret)
    service, client = serve(folder, tmp_path / "out.json", model)
    try:
        kept = (folder / "a_good.png").read_bytes()
        (folder / "a_good.png").unlink()
        (folder / "a_good.png").symlink_to(secret)
        for response in (client.get("/api/images/1"),
                         client.post("/api/images/1/predict", json={"points": [[5, 5]], "labels": [1]})):
            assert response.status_code == 403, response.text
            assert "outside the image folder" in response.json()["error"]
            assert secret.read_bytes() not in response.content
        assert "outside" in client.get("/api/images").json()["images"][0]["unavailable"]
        (folder / "a_good.png").unlink()
        (folder / "a_good.png").write_bytes(kept)  # put back: served again
        assert client.get("/api/images/1").content == kept
        assert client.get("/api/images").json()["images"][0]["unavailable"] is None
        (folder / "a_good.png").unlink()
        assert client.get("/api/images/1").status_code == 404
    finally:
        service.close()


def test_orphaned_temp_files_of_killed_saves_are_removed_at_start_up(tmp_path, model, scene_image, monkeypatch, capsys):
    """Guards: every kill -9 during a save left a full-size ``<out>.*.tmp`` that nothing removed
    (19-24 of them after 25 kills)."""
    import uvicorn

    from promptseg.cli import main

    folder = good_folder(tmp_path / "images", scene_image)
    out = tmp_path / "out.json"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    orphan = tmp_path / f"out.json.promptseg-{dead}-0123abcd.tmp"
    alive = tmp_path / f"out.json.promptseg-{os.getpid()}-4567cdef.tmp"  # a running writer's: kept
    other = tmp_path / f"other.json.promptseg-{dead}-89abcdef.tmp"  # another output's: not this server's
    for path in (orphan, alive, other):
        path.write_text("{}")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    assert main(["annotate", str(folder), "--out", str(out)]) == 0
    assert not orphan.exists() and alive.exists() and other.exists()
    assert f"removed {orphan.name}" in capsys.readouterr().err


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o664])
def test_the_output_file_keeps_its_mode(tmp_path, model, scene_image, mode):
    """Guards: each save reset the output file's mode to 0600 (the temporary file's), so a shared
    annotations file became unreadable to the others after the first accept."""
    folder = good_folder(tmp_path / "images", scene_image)
    out = tmp_path / "out.json"
    out.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    out.chmod(mode)
    service, client = serve(folder, out, model)
    try:
        assert stat.S_IMODE(out.stat().st_mode) == mode  # the start-up save
        assert client.post("/api/images/1/annotations", json=SQUARE).status_code == 200
        assert client.put("/api/images/1/state", json={"state": "done"}).status_code == 200
        assert stat.S_IMODE(out.stat().st_mode) == mode
    finally:
        service.close()
