"""Hostile and malformed requests to the annotation server: every input is bounded before native code,
every parse failure is a 400, labels are normalised, state-changing requests need JSON, every response
carries the framing and nosniff headers, the Host allow-list follows --host, and pages of other sites are
refused. Each test names the failure it guards against."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
mask_utils = pytest.importorskip("pycocotools.mask")
from fastapi.testclient import TestClient  # noqa: E402

from promptseg.annotate import AnnotationService, create_app  # noqa: E402
from promptseg.annotate.guard import allowed_hosts_for  # noqa: E402
from promptseg.bundled import build_bundled_sam  # noqa: E402
from promptseg.data.synthetic import generate_scene  # noqa: E402

SIZE = 64
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def model():
    return build_bundled_sam()


@pytest.fixture(scope="module")
def served(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(generate_scene(1).image[:SIZE, :SIZE].copy()).save(folder / "a.png")
    Image.fromarray(generate_scene(2).image[:SIZE, :SIZE].copy()).save(folder / "b.png")
    service = AnnotationService(folder, folder.parent / "out.json", model, prefetch=False)
    yield service, TestClient(create_app(service, allowed_hosts=allowed_hosts_for("127.0.0.1")),
                              base_url="http://127.0.0.1:8765")
    service.close()


def alive(client) -> None:
    assert client.get("/api/images").status_code == 200


def decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


# ------------------------------------------------------------------ polygons
@pytest.fixture()
def rasteriser_spy(monkeypatch):
    """Records every polygon handed to pycocotools, and fails at once on one outside the image (which
    is what crashed the server), before pycocotools can allocate for it."""
    seen: list[np.ndarray] = []
    original = mask_utils.frPyObjects

    def spy(objects, height, width):
        if isinstance(objects, list) and objects and isinstance(objects[0], list):
            for ring in objects:
                points = np.asarray(ring, float).reshape(-1, 2)
                assert points.min() >= 0 and (points[:, 0] <= width).all() and (points[:, 1] <= height).all(), \
                    f"a polygon outside the {width} x {height} image reached pycocotools: {ring[:8]}"
                seen.append(points)
        return original(objects, height, width)

    monkeypatch.setattr(mask_utils, "frPyObjects", spy)
    return seen


def test_the_70_byte_request_that_killed_the_server_is_refused(served, rasteriser_spy):
    """Guards: ``POST /api/images/1/annotations {"polygon": [[0,0, 4e8,0, 0,4e8]], "category": "x"}``
    killed the server with SIGSEGV: pycocotools' rasteriser allocated about 24 GB for the triangle's
    edges without checking that it got them."""
    _, client = served
    body = b'{"polygon": [[0,0, 4e8,0, 0,4e8]], "category": "x"}'
    response = client.post("/api/images/1/annotations", content=body, headers=JSON)
    assert response.status_code == 400 and "must lie within" in response.json()["error"]
    assert rasteriser_spy == []
    alive(client)


def test_polygons_reaching_outside_the_image_are_clipped_at_once(served, rasteriser_spy):
    """Guards: a vertex at 3e6 took 1.3 s of rasterising (its whole edge, mostly outside the image);
    clipped to the image first, the same polygon is the triangle's part inside the image."""
    service, client = served
    started = time.perf_counter()
    big = client.post("/api/images/1/annotations", json={"polygon": [[0, 0, 3e6, 0, 0, 3e6]], "category": "x"})
    assert big.status_code == 200 and big.json()["area"] == SIZE * SIZE
    assert time.perf_counter() - started < 1.0
    # A triangle half outside: its part inside, as rasterising it on a canvas holding it all gives.
    ring = [-20.0, 10.0, 50.0, -30.0, 40.0, 90.0]
    clipped = client.post("/api/images/1/annotations", json={"polygon": [ring], "category": "x"}).json()
    shifted = [v + 100 for v in ring]
    whole = mask_utils.decode(mask_utils.frPyObjects([shifted], SIZE + 200, SIZE + 200))[100:100 + SIZE, 100:100 + SIZE, 0]
    got = decode(clipped["segmentation"])
    assert (got & whole.astype(bool)).sum() / (got | whole.astype(bool)).sum() > 0.97
    outside = client.post("/api/images/1/annotations", json={"polygon": [[100, 100, 200, 100, 150, 200]], "category": "x"})
    assert outside.status_code == 400 and "empty" in outside.json()["error"]
    for annotation in service.store.annotations(1):
        service.store.delete(annotation["id"])


@pytest.mark.parametrize("polygon, message", [
    ([[0, 0, 1, 0, 1, 1] * 17000], "at most 50000 vertices"),
    ([[0.0, 0.0, 64.0, 64.0] * 4000], "outline inside the image"),
    ([[0, 0, 5, 0, 5, float(2**25)]], "must lie within"),
    ([[0, 0, 5, 0, 5, 1e30]], "must lie within"),
    ([[0, 0, 5, 0, 5, -1e300]], "must lie within"),
    ([[0, 0, 5, 0, 5, True]], "finite numbers"),
    ([[0, 0, 5, 0, 5]], "at least 3"),
    ([[0, 0, 5, 0, 5, 5], "ring"], "ring 1 must be a list"),
    ([], "non-empty list"),
])
def test_polygon_vertex_count_outline_and_coordinates_are_bounded(served, rasteriser_spy, polygon, message):
    """Guards: polygons went to pycocotools with any number of vertices and any extent, its cost
    (memory and time) growing with the outline's length."""
    service, client = served
    stored = client.post("/api/images/1/annotations", json={"rle": {"size": [SIZE, SIZE], "counts": [0, 10, SIZE * SIZE - 10]},
                                                            "category": "x"}).json()
    for response in (client.post("/api/images/1/annotations", json={"polygon": polygon, "category": "x"}),
                     client.put(f"/api/annotations/{stored['id']}", json={"polygon": polygon}),
                     client.put(f"/api/annotations/{stored['id']}", json={"polygon": polygon, "fill_rule": "evenodd"})):
        assert response.status_code == 400 and message in response.json()["error"], response.text[:300]
    assert rasteriser_spy == []
    service.store.delete(stored["id"])


def test_even_odd_polygons_with_many_rings_cost_their_runs_not_an_image_per_ring(tmp_path, model):
    """Guards: an even-odd polygon was filled by decoding a whole H x W mask per ring, so 2000 small holes
    in an object of a 1500 x 1500 image took seconds (minutes on a photo); the rings' runs are combined now."""
    side = 1500
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(folder / "large.png")
    service = AnnotationService(folder, tmp_path / "out.json", model, prefetch=False)
    try:
        client = TestClient(create_app(service))
        outer = [0, 0, side, 0, side, side, 0, side]
        stored = client.post("/api/images/1/annotations", json={"polygon": [outer], "category": "x"}).json()
        holes = [[x, y, x + 2, y, x + 2, y + 2, x, y + 2] for x in range(10, 1410, 35) for y in range(10, 1010, 20)]
        started = time.perf_counter()
        framed = client.put(f"/api/annotations/{stored['id']}", json={"polygon": [outer, *holes], "fill_rule": "evenodd"})
        elapsed = time.perf_counter() - started
        assert framed.status_code == 200 and framed.json()["area"] == side * side - 4 * len(holes)
        print(f"even-odd fill of {len(holes) + 1} rings on {side} x {side}: {elapsed:.2f} s")
        assert elapsed < 2.0
    finally:
        service.close()


# ------------------------------------------------------------------ RLE
@pytest.mark.parametrize("counts, message", [
    ([0, 1] * 500_000, "at most 500000 runs"),
    ("1" * 500_001, "at most 500000 characters"),
    ([10, 0, 0, SIZE * SIZE - 10], "only the first may be 0"),
    ([0, 0, SIZE * SIZE], "only the first may be 0"),
    ([SIZE * SIZE, 1], "H * W"),
])
def test_rle_counts_are_positive_add_up_and_have_a_size_cap(served, counts, message):
    """Guards: zero-length runs were accepted, so a 10**6-entry counts list was stored and rewritten on
    every save; RLEs are now capped in size, their runs positive (but the first) and adding up to H x W."""
    _, client = served
    response = client.post("/api/images/1/annotations", json={"rle": {"size": [SIZE, SIZE], "counts": counts}, "category": "x"})
    assert response.status_code == 400 and message in response.json()["error"], response.text[:300]
    alive(client)


# ------------------------------------------------------------------ JSON
@pytest.mark.parametrize("body, message", [
    (b"[" * 100_000, "nested"),
    (b'{"points": [[' + b"1" * 5000 + b', 1]], "labels": [1]}', "an integer of 5000 digits"),
    (b'{"points": [[1e999, 1]], "labels": [1]}', "out of the range"),
    (b'{"points": [[NaN, 1]], "labels": [1]}', "NaN is not a JSON number"),
    (b'{"points": [[-Infinity, 1]], "labels": [1]}', "-Infinity is not a JSON number"),
    (b'{"points": [[0.' + b"1" * 100 + b', 1]], "labels": [1]}', "characters"),
    (b'{"box": ' + b"[" * 17 + b"]" * 17 + b"}", "nested more than 16"),
    (b'{"points": [[1, 1]], "labels": [1]', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"", "not valid JSON"),
])
def test_json_depth_and_number_sizes_are_bounded_and_any_parse_failure_is_a_400(served, body, message):
    """Guards: 100,000 nested ``[`` (RecursionError) or a 5000-digit integer (Python's int limit) gave
    500 instead of 400; so could a number out of a double's range in later code."""
    _, client = served
    response = client.post("/api/images/1/predict", content=body, headers=JSON)
    assert response.status_code == 400 and message in response.json()["error"], response.text[:300]
    alive(client)


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize("label, message", [
    ("evil\u202eexe.png", "bidirectional control (U+202E"),
    ("a\u2066b", "bidirectional control"),
    ("tab\tinside", "control character (U+0009"),
    ("line\nbreak", "control character"),
    ("nul\x00", "control character"),
    ("del\x7f", "control character"),
    ("sep\u2028arator", "control character"),
    ("x" * 101, "at most 100 characters"),
    ("   ", "non-empty"),
])
def test_labels_with_control_characters_or_bidi_overrides_are_refused_everywhere(served, label, message):
    """Guards: labels kept control characters and U+202E (which shows the rest of a name reversed) in
    the annotations file and the page, through an accept and a relabel alike."""
    service, client = served
    accepted = client.post("/api/images/1/annotations", json={"polygon": [[2, 2, 20, 2, 20, 20]], "category": label})
    assert accepted.status_code == 400 and message in accepted.json()["error"]
    stored = client.post("/api/images/1/annotations", json={"polygon": [[2, 2, 20, 2, 20, 20]], "category": "ok"}).json()
    for response in (client.patch(f"/api/annotations/{stored['id']}", json={"category": label}),
                     client.post("/api/images/1/relabel", json={"ids": [stored["id"]], "category": label})):
        assert response.status_code == 400 and message in response.json()["error"]
    service.store.delete(stored["id"])


def test_labels_are_normalised_to_nfc_and_stripped(served):
    """Guards: "café" typed with a combining accent became a second class beside the precomposed one."""
    service, client = served
    first = client.post("/api/images/1/annotations", json={"polygon": [[2, 2, 20, 2, 20, 20]], "category": "caf\u00e9"}).json()
    second = client.post("/api/images/1/annotations", json={"polygon": [[2, 2, 20, 2, 20, 20]], "category": " cafe\u0301 "}).json()
    assert second["category"] == "caf\u00e9" and second["category_id"] == first["category_id"]
    for stored in (first, second):
        service.store.delete(stored["id"])


def test_command_line_labels_are_checked_as_the_api_checks_them(tmp_path, monkeypatch, capsys):
    """Guards: --labels and --labels-file took control characters and bidi overrides into the classes."""
    import uvicorn

    from promptseg.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(generate_scene(1).image[:SIZE, :SIZE].copy()).save(folder / "a.png")
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(app))
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("car\nevil\u202ename\n", encoding="utf-8")
    for bad, message in ((["--labels", "car,a\u202eb"], "--labels: label 2: a label may not hold a bidirectional"),
                         (["--labels", "car,a\x07b"], "control character (U+0007"),
                         (["--labels-file", str(labels_file)], f"--labels-file {labels_file}: label 2"),
                         (["--labels-file", str(tmp_path / "missing.txt")], "does not exist")):
        with pytest.raises(SystemExit):
            main(["annotate", str(folder), "--out", str(tmp_path / "out.json"), *bad])
        assert message in capsys.readouterr().err
    assert main(["annotate", str(folder), "--out", str(tmp_path / "out.json"), "--labels", " cafe\u0301 ,car"]) == 0
    assert calls[-1].state.service.store.labels == ["caf\u00e9", "car"]


# ------------------------------------------------------------------ content type, headers, hosts, sites
def test_state_changing_and_heavy_requests_need_a_json_content_type_even_when_empty(served, monkeypatch):
    """Guards: an empty-body cross-origin POST to /prefill (no Content-Type, which a page elsewhere may
    send without asking) ran a full automatic generation, up to 9.6 s, holding the decode lock."""
    from promptseg.automatic import SamAutomaticMaskGenerator

    _, client = served
    generated = []
    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", lambda self, image: generated.append(1) or [])
    for method, path in (("post", "/api/images/1/prefill"), ("post", "/api/images/1/undo"), ("post", "/api/images/1/redo"),
                         ("post", "/api/images/1/predict"), ("post", "/api/images/1/annotations"),
                         ("put", "/api/images/1/state"), ("patch", "/api/annotations/1"), ("put", "/api/annotations/1")):
        for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"},
                        {"content-type": "multipart/form-data; boundary=x"}):
            response = getattr(client, method)(path, headers=headers)
            assert response.status_code == 415, (method, path, headers, response.text)
            assert "Content-Type: application/json" in response.json()["error"]
    assert generated == []
    assert client.post("/api/images/1/prefill", headers=JSON).status_code == 200 and generated == [1]
    assert client.post("/api/images/1/prefill", headers={"content-type": "application/json; charset=utf-8"}).status_code == 200


HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff"}


def test_every_response_forbids_framing_and_sniffing(served):
    """Guards: no X-Frame-Options / CSP frame-ancestors (the page could be framed by another site and
    clicked through) and no X-Content-Type-Options: nosniff on the server's responses."""
    _, client = served
    responses = {
        "page": client.get("/"), "script": client.get("/static/app.js"), "image": client.get("/api/images/1"),
        "listing": client.get("/api/images"), "export": client.get("/api/export/coco-rle"),
        "404": client.get("/api/nothing"), "400": client.post("/api/images/1/predict", json={}),
        "415": client.post("/api/images/1/predict", content=b"{}"),
        "413": client.post("/api/images/1/predict", content=b"x" * (17 * 1024 * 1024), headers=JSON),
        "host": client.get("/api/images", headers={"host": "attacker.example"}),
        "cross-site": client.get("/api/images", headers={"sec-fetch-site": "cross-site"}),
    }
    for name, response in responses.items():
        for header, value in HEADERS.items():
            assert response.headers.get(header) == value, (name, header, dict(response.headers))
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], name
    assert responses["413"].status_code == 413 and responses["host"].status_code == 400


def test_the_host_allow_list_follows_host(tmp_path, monkeypatch):
    """Guards: the Host allow-list ignored --host, so ``--host 127.0.0.2`` refused its own requests (and a
    rebinding name must still be refused)."""
    import uvicorn

    from promptseg.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(generate_scene(1).image[:SIZE, :SIZE].copy()).save(folder / "a.png")
    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append((app, kwargs)))
    for host, url in (("127.0.0.2", "http://127.0.0.2:8765"), ("::1", "http://[::1]:8765"), ("localhost", "http://localhost:8765")):
        assert main(["annotate", str(folder), "--out", str(tmp_path / "out.json"), "--host", host]) == 0
        app, kwargs = apps[-1]
        assert kwargs["host"] == host
        client = TestClient(app, base_url=url)
        assert client.get("/api/images").status_code == 200, host
        assert client.get("/api/images", headers={"host": "127.0.0.1:8765"}).status_code == 200
        refused = client.get("/api/images", headers={"host": "rebound.attacker.example:8765"})
        assert refused.status_code == 400 and "DNS rebinding" in refused.json()["error"]
        app.state.service.close()


def test_pages_of_other_sites_cannot_use_the_api(served):
    """Guards: a page on another site (or another port of this machine) could make the server read
    images and start embeddings through plain GETs (``<img src=...>``)."""
    _, client = served
    for site in ("cross-site", "same-site"):
        response = client.get("/api/images/1", headers={"sec-fetch-site": site})
        assert response.status_code == 403 and "another site" in response.json()["error"]
    assert client.get("/api/images/1", headers={"sec-fetch-site": "same-origin"}).status_code == 200
    assert client.get("/", headers={"sec-fetch-site": "cross-site"}).status_code == 200  # a link to the page
