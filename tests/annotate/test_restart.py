"""Nothing is lost: ``promptseg annotate`` killed (SIGKILL) between two accepts and started again on the
same --out keeps both objects, and the file stays valid COCO."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("pycocotools")

from promptseg.data.synthetic import generate_scene  # noqa: E402

START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(url: str, method: str = "GET", body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def start_server(images: Path, out: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "promptseg", "annotate", str(images), "--out", str(out), "--port", str(port),
         "--no-prefetch"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {process.stdout.read()}")
        try:
            call(f"http://127.0.0.1:{port}/api/images")
            return process
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the server did not answer within {START_TIMEOUT_S} s")


def accept_a_click(base: str, x: int, y: int, label: str) -> dict:
    predicted = call(f"{base}/api/images/1/predict", "POST", {"points": [[x, y]], "labels": [1], "multimask": False})
    return call(f"{base}/api/images/1/annotations", "POST", {"rle": predicted["masks"][0], "category": label})


def test_kill_between_two_accepts_loses_nothing(tmp_path):
    from pycocotools.coco import COCO

    images, out = tmp_path / "images", tmp_path / "annotations.json"
    images.mkdir()
    Image.fromarray(generate_scene(1).image).save(images / "scene.png")
    started = time.perf_counter()

    port = free_port()
    server = start_server(images, out, port)
    try:
        first = accept_a_click(f"http://127.0.0.1:{port}", 112, 51, "first")
    finally:
        server.kill()  # SIGKILL: no clean shutdown
        server.wait(timeout=30)
        server.stdout.close()
    assert [a["id"] for a in json.loads(out.read_text())["annotations"]] == [first["id"]]

    port = free_port()
    server = start_server(images, out, port)
    try:
        base = f"http://127.0.0.1:{port}"
        assert call(f"{base}/api/images")["images"][0]["annotations"] == 1
        second = accept_a_click(base, 168, 82, "second")
        exported = call(f"{base}/api/export")
    finally:
        server.kill()
        server.wait(timeout=30)
        server.stdout.close()

    assert second["id"] != first["id"]
    assert {(a["id"], a["category_id"]) for a in exported["annotations"]} == {
        (first["id"], first["category_id"]), (second["id"], second["category_id"]),
    }
    coco = COCO(str(out))
    assert sorted(coco.getAnnIds()) == sorted([first["id"], second["id"]])
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"first", "second"}
    assert not list(tmp_path.glob("*.tmp")), "a temporary file was left behind"
    print(f"two server runs with a SIGKILL between accepts: {time.perf_counter() - started:.1f} s")
