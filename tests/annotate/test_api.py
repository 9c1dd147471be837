"""The annotation server's HTTP API (FastAPI's test client), on synthetic scenes with the bundled model:
every endpoint, the embedding cache and prefetch, the annotations file, and every bad-input case."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("pycocotools")
from fastapi.testclient import TestClient  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from promptseg.annotate import AnnotationService, AnnotationStore, EmbeddingCache, create_app, list_images  # noqa: E402
from promptseg.bundled import build_bundled_sam  # noqa: E402
from promptseg.data.synthetic import generate_scene  # noqa: E402
from promptseg.masks import deepest_points  # noqa: E402
from promptseg.predictor import SamPredictor  # noqa: E402

SEEDS = (1, 2, 3)
OFFSET = 64  # the third image is a scene pasted at x = 64 on a 320 x 256 canvas (not square)


def decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of ``mask`` farthest from its boundary."""
    x, y = deepest_points(torch.from_numpy(mask)[None])[0].tolist()
    return int(x), int(y)


def largest_plain_object(scene) -> int:
    candidates = [k for k in range(len(scene.masks)) if scene.parents[k] < 0 and not (scene.parents == k).any()]
    return max(candidates, key=lambda k: int(scene.masks[k].sum()))


@pytest.fixture(scope="module")
def model():
    return build_bundled_sam()


@pytest.fixture(scope="module")
def scenes():
    return {seed: generate_scene(seed) for seed in SEEDS}


def write_images(folder: Path, scenes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scenes[1].image).save(folder / "a.png")
    Image.fromarray(scenes[2].image).save(folder / "b.jpg", quality=95)
    wide = np.zeros((256, 320, 3), np.uint8)
    wide[:, OFFSET:OFFSET + 256] = scenes[3].image
    Image.fromarray(wide).save(folder / "c.png")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, model, scenes):
    root = tmp_path_factory.mktemp("annotate")
    write_images(root / "images", scenes)
    (root / "secret.png").write_bytes(b"SECRET-OUTSIDE-THE-FOLDER")
    (root / "images" / "link.png").symlink_to(root / "secret.png")
    service = AnnotationService(root / "images", root / "out.json", model, cache_size=2)
    client = TestClient(create_app(service, max_body_bytes=64 * 1024))
    yield client, service, root
    service.close()


def read_out(root: Path) -> dict:
    return json.loads((root / "out.json").read_text())


# ------------------------------------------------------------------ images
def test_list_images_with_ids_sizes_and_counts(setup):
    client, _, _ = setup
    images = client.get("/api/images").json()["images"]
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in images] == [
        (1, "a.png", 256, 256), (2, "b.jpg", 256, 256), (3, "c.png", 320, 256),
    ]
    assert all(isinstance(i["annotations"], int) for i in images)


def test_image_bytes_are_the_file(setup):
    client, _, root = setup
    response = client.get("/api/images/2")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == (root / "images" / "b.jpg").read_bytes()


def test_no_file_outside_the_folder_is_listed_or_served(setup):
    client, _, _ = setup
    assert "link.png" not in [i["file_name"] for i in client.get("/api/images").json()["images"]]
    for path in ("/api/images/..%2Fsecret.png", "/api/images/%2E%2E", "/api/images/..", "/api/images/link.png",
                 "/api/images/%2Fetc%2Fpasswd", "/static/..%2Fserver.py", "/static/server.py"):
        response = client.get(path)
        assert 400 <= response.status_code < 500, path
        assert b"SECRET" not in response.content and "error" in response.json(), path


# ------------------------------------------------------------------ predict
def test_predict_returns_three_rles_scores_token_and_decode_time(setup, scenes):
    client, _, _ = setup
    scene = scenes[1]
    target = largest_plain_object(scene)
    x, y = deepest_point(scene.masks[target])
    body = {"points": [[x, y]], "labels": [1], "box": None, "mask_input": None, "multimask": True}
    result = client.post("/api/images/1/predict", json=body).json()
    assert len(result["masks"]) == 3 and len(result["scores"]) == 3
    assert all(rle["size"] == [256, 256] and isinstance(rle["counts"], str) for rle in result["masks"])
    assert isinstance(result["mask_input"], str) and result["decode_ms"] > 0
    best = decode(result["masks"][int(np.argmax(result["scores"]))])
    print(f"one click: IoU {iou(best, scene.masks[target]):.3f}, decode {result['decode_ms']:.1f} ms")
    assert iou(best, scene.masks[target]) >= 0.5


def test_coordinates_are_original_pixels_of_a_non_square_image(setup, scenes):
    client, _, _ = setup
    scene = scenes[3]
    target = largest_plain_object(scene)
    truth = np.zeros((256, 320), bool)
    truth[:, OFFSET:OFFSET + 256] = scene.masks[target]
    x, y = deepest_point(truth)
    result = client.post("/api/images/3/predict", json={"points": [[x, y]], "labels": [1]}).json()
    assert result["masks"][0]["size"] == [256, 320]
    best = decode(result["masks"][int(np.argmax(result["scores"]))])
    print(f"click on the 320x256 image: IoU {iou(best, truth):.3f}")
    assert iou(best, truth) >= 0.5
    ys, xs = np.nonzero(scene.masks[target])
    box = [float(xs.min() + OFFSET), float(ys.min()), float(xs.max() + OFFSET + 1), float(ys.max() + 1)]
    boxed = client.post("/api/images/3/predict", json={"box": box, "multimask": False}).json()
    assert len(boxed["masks"]) == 1
    print(f"box on the 320x256 image: IoU {iou(decode(boxed['masks'][0]), truth):.3f}")
    assert iou(decode(boxed["masks"][0]), truth) >= 0.5


def test_mask_input_token_feeds_back_the_previous_low_res_logits(setup, scenes, model):
    client, _, _ = setup
    scene = scenes[1]
    target = largest_plain_object(scene)
    x, y = deepest_point(scene.masks[target])
    first = client.post("/api/images/1/predict", json={"points": [[x, y]], "labels": [1]}).json()
    points, labels = [[x, y], [5, 5]], [1, 0]
    second = client.post(
        "/api/images/1/predict", json={"points": points, "labels": labels, "mask_input": first["mask_input"]}
    ).json()
    chosen = first["mask_inputs"][1]
    third = client.post("/api/images/1/predict", json={"points": points, "labels": labels, "mask_input": chosen}).json()

    predictor = SamPredictor(model)
    predictor.set_image(scene.image)
    _, scores, logits = predictor.predict(np.array([[x, y]], float), np.array([1]))
    for token_result, logit in ((second, logits[int(np.argmax(scores))]), (third, logits[1])):
        masks, _, _ = predictor.predict(np.array(points, float), np.array(labels), mask_input=logit[None])
        expected = [decode(rle) for rle in token_result["masks"]]
        assert all((a == b).all() for a, b in zip(expected, masks))
    assert first["mask_input"] == first["mask_inputs"][int(np.argmax(first["scores"]))]


def test_mask_input_token_errors(setup):
    client, _, _ = setup
    token = client.post("/api/images/1/predict", json={"points": [[10, 10]], "labels": [1]}).json()["mask_input"]
    other = client.post("/api/images/2/predict", json={"points": [[10, 10]], "labels": [1], "mask_input": token})
    assert other.status_code == 400 and "belongs to image 1" in other.json()["error"]
    unknown = client.post("/api/images/1/predict", json={"points": [[10, 10]], "labels": [1], "mask_input": "nope"})
    assert unknown.status_code == 400 and "unknown or expired mask_input" in unknown.json()["error"]
    wrong_type = client.post("/api/images/1/predict", json={"points": [[10, 10]], "labels": [1], "mask_input": [1]})
    assert wrong_type.status_code == 400 and "token" in wrong_type.json()["error"]


# ------------------------------------------------------------------ embeddings
def test_opening_an_image_embeds_it_and_the_next_one_ahead(setup):
    client, service, _ = setup
    client.get("/api/images/1")
    service.cache.wait_idle()
    assert service.cache.cached(1) and service.cache.cached(2)
    assert service.cache.keys()[-2:] == [1, 2]
    before = dict(service.cache.stats)
    client.post("/api/images/2/predict", json={"points": [[20, 20]], "labels": [1]})
    assert service.cache.stats["hits"] == before["hits"] + 1 and service.cache.stats["misses"] == before["misses"]
    status = client.get("/api/status").json()["cache"]
    assert status["capacity"] == 2 and len(status["keys"]) <= 2


def test_embedding_cache_is_lru_with_its_size(model, scenes):
    loads = []

    def load(key):
        loads.append(key)
        return scenes[key].image

    cache = EmbeddingCache(model, load, capacity=2)
    try:
        first = cache.get(1)
        assert cache.get(1) is first and loads == [1]
        cache.get(2)
        cache.get(1)  # 1 becomes the most recent
        cache.get(3)  # evicts 2, the least recently used
        assert cache.keys() == [1, 3] and loads == [1, 2, 3]
        cache.prefetch(2)
        cache.wait_idle()
        assert cache.keys() == [3, 2] and cache.cached(2) and cache.stats["prefetched"] == 1
        assert first.predictor.get_image_embedding().shape[0] == 1 and first.encode_ms > 0
        with pytest.raises(ValueError, match="cache size"):
            EmbeddingCache(model, load, capacity=0)
    finally:
        cache.close()


# ------------------------------------------------------------------ annotations
def test_accept_relabel_delete_each_written_at_once(setup, scenes):
    client, _, root = setup
    mask = scenes[2].masks[largest_plain_object(scenes[2])]
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle = {"size": rle["size"], "counts": rle["counts"].decode()}
    stored = client.post("/api/images/2/annotations", json={"rle": rle, "category": "blob"}).json()
    assert stored["image_id"] == 2 and stored["category"] == "blob" and stored["area"] == int(mask.sum())
    on_disk = read_out(root)
    assert [a["id"] for a in on_disk["annotations"] if a["image_id"] == 2] == [stored["id"]]
    assert (decode(on_disk["annotations"][-1]["segmentation"]) == mask).all()

    polygon = client.post(
        "/api/images/2/annotations", json={"polygon": [[10, 10, 60, 10, 60, 40, 10, 40]], "category": "box"}
    ).json()
    assert polygon["segmentation"]["size"] == [256, 256] and 1400 <= polygon["area"] <= 1600
    uncompressed = client.post(
        "/api/images/2/annotations",
        json={"rle": {"size": [256, 256], "counts": [100, 50, 256 * 256 - 150]}, "category": "blob"},
    ).json()
    assert uncompressed["area"] == 50 and isinstance(uncompressed["segmentation"]["counts"], str)
    assert {c["name"] for c in read_out(root)["categories"]} >= {"blob", "box"}
    listed = client.get("/api/images").json()
    assert {"blob", "box"} <= set(listed["categories"])
    assert next(i for i in listed["images"] if i["id"] == 2)["annotations"] == 3

    relabelled = client.patch(f"/api/annotations/{polygon['id']}", json={"category": "rectangle"}).json()
    assert relabelled["category"] == "rectangle"
    names = {c["id"]: c["name"] for c in read_out(root)["categories"]}
    assert names[next(a for a in read_out(root)["annotations"] if a["id"] == polygon["id"])["category_id"]] == "rectangle"

    assert client.delete(f"/api/annotations/{uncompressed['id']}").status_code == 200
    assert uncompressed["id"] not in [a["id"] for a in read_out(root)["annotations"]]
    again = client.delete(f"/api/annotations/{uncompressed['id']}")
    assert again.status_code == 404 and "unknown annotation id" in again.json()["error"]
    per_image = client.get("/api/images/2/annotations").json()["annotations"]
    assert [a["id"] for a in per_image] == [stored["id"], polygon["id"]]
    fresh = client.post("/api/images/2/annotations", json={"rle": rle, "category": "blob"}).json()
    assert fresh["id"] > uncompressed["id"]  # ids are never reused
    client.delete(f"/api/annotations/{fresh['id']}")


def test_export_is_the_file_and_valid_coco(setup):
    client, _, root = setup
    exported = client.get("/api/export").json()
    assert exported == read_out(root)
    coco = COCO(str(root / "out.json"))
    assert {image["file_name"]: (image["width"], image["height"]) for image in coco.loadImgs(coco.getImgIds())} == {
        "a.png": (256, 256), "b.jpg": (256, 256), "c.png": (320, 256),
    }
    for annotation in coco.loadAnns(coco.getAnnIds()):
        image = coco.loadImgs(annotation["image_id"])[0]
        assert coco.annToMask(annotation).shape == (image["height"], image["width"])
        assert annotation["iscrowd"] == 0 and len(annotation["bbox"]) == 4
        assert coco.loadCats(annotation["category_id"])


def test_two_tabs_accepting_at_once_do_not_corrupt_the_file(setup):
    client, _, root = setup
    rle = {"size": [256, 256], "counts": [0, 300, 256 * 256 - 300]}
    errors: list[Exception] = []
    ids: list[int] = []

    def tab(label: str) -> None:
        try:
            for _ in range(8):
                response = client.post("/api/images/1/annotations", json={"rle": rle, "category": label})
                assert response.status_code == 200, response.text
                ids.append(response.json()["id"])
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    tabs = [threading.Thread(target=tab, args=(f"tab{i}",)) for i in range(2)]
    for thread in tabs:
        thread.start()
    for thread in tabs:
        thread.join()
    assert not errors
    stored = [a["id"] for a in read_out(root)["annotations"]]
    assert len(set(ids)) == 16 and set(ids) <= set(stored) and len(stored) == len(set(stored))
    for annotation_id in ids:
        client.delete(f"/api/annotations/{annotation_id}")


def test_two_servers_on_one_file_merge_instead_of_overwriting(tmp_path, scenes):
    write_images(tmp_path / "images", scenes)
    files = list_images(tmp_path / "images")
    first, second = AnnotationStore(tmp_path / "out.json", files), AnnotationStore(tmp_path / "out.json", files)
    rle = {"size": [256, 256], "counts": mask_utils.encode(np.asfortranarray(np.eye(256, dtype=np.uint8)))["counts"].decode()}
    a = first.add(1, rle, "from-first")
    b = second.add(1, rle, "from-second")
    assert a["id"] != b["id"]
    assert {x["category"] for x in first.annotations()} == {"from-first", "from-second"}
    assert [x["id"] for x in json.loads((tmp_path / "out.json").read_text())["annotations"]] == [a["id"], b["id"]]


def test_restart_resumes_with_everything_and_keeps_image_ids(tmp_path, scenes, model):
    write_images(tmp_path / "images", scenes)
    service = AnnotationService(tmp_path / "images", tmp_path / "out.json", model, prefetch=False)
    client = TestClient(create_app(service))
    polygon = [[0, 0, 30, 0, 30, 30]]
    stored = client.post("/api/images/3/annotations", json={"polygon": polygon, "category": "corner"}).json()
    service.close()
    Image.fromarray(scenes[1].image).save(tmp_path / "images" / "0_new.png")  # sorts first; must not take id 1
    service = AnnotationService(tmp_path / "images", tmp_path / "out.json", model, prefetch=False)
    client = TestClient(create_app(service))
    images = {i["file_name"]: i for i in client.get("/api/images").json()["images"]}
    assert images["c.png"]["id"] == 3 and images["c.png"]["annotations"] == 1 and images["0_new.png"]["id"] == 4
    assert client.get("/api/images/3/annotations").json()["annotations"][0]["id"] == stored["id"]
    service.close()


def test_a_broken_out_file_is_refused_and_left_alone(tmp_path, scenes, model):
    write_images(tmp_path / "images", scenes)
    (tmp_path / "out.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON file"):
        AnnotationService(tmp_path / "images", tmp_path / "out.json", model)
    assert (tmp_path / "out.json").read_text() == "{not json"


# ------------------------------------------------------------------ pre-fill
def test_prefill_returns_proposals_and_drops_accepted_ones(setup):
    client, _, _ = setup
    settings = {"points_per_side": 8, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}
    result = client.post("/api/images/2/prefill", json=settings).json()
    proposals = result["proposals"]
    print(f"pre-fill (8x8 grid): {len(proposals)} proposals in {result['elapsed_ms']:.0f} ms")
    assert proposals and result["settings"] == settings
    assert all(p["rle"]["size"] == [256, 256] and 0 <= p["score"] <= 1.5 for p in proposals)
    accepted = client.post("/api/images/2/annotations", json={"rle": proposals[0]["rle"], "category": "auto"}).json()
    again = client.post("/api/images/2/prefill", json=settings).json()["proposals"]
    assert proposals[0]["rle"] not in [p["rle"] for p in again]
    client.delete(f"/api/annotations/{accepted['id']}")


# ------------------------------------------------------------------ bad input
BAD_REQUESTS = [
    ("get", "/api/images/99", None, 404, "unknown image id 99"),
    ("post", "/api/images/99/predict", {"points": [[1, 1]], "labels": [1]}, 404, "unknown image id"),
    ("post", "/api/images/99/annotations", {"polygon": [[0, 0, 5, 0, 5, 5]], "category": "x"}, 404, "unknown image id"),
    ("post", "/api/images/99/prefill", {}, 404, "unknown image id"),
    ("get", "/api/images/99/annotations", None, 404, "unknown image id"),
    ("get", "/api/images/abc", None, 400, "decimal integer"),
    ("delete", "/api/annotations/9999", None, 404, "unknown annotation id"),
    ("delete", "/api/annotations/x1", None, 400, "decimal integer"),
    ("post", "/api/images/1/predict", {"points": [[257, 3]], "labels": [1]}, 400, "outside the image"),
    ("post", "/api/images/1/predict", {"points": [[3, -1]], "labels": [1]}, 400, "outside the image"),
    ("post", "/api/images/3/predict", {"points": [[300, 3]], "labels": [1]}, 200, None),  # inside the 320-wide image
    ("post", "/api/images/1/predict", {"box": [0, 0, 300, 10]}, 400, "outside the image"),
    ("post", "/api/images/1/predict", {"box": [50, 50, 10, 10]}, 400, "x0 <= x1"),
    ("post", "/api/images/1/predict", {"points": [[3, 3]], "labels": [2]}, 400, "labels[0]"),
    ("post", "/api/images/1/predict", {"points": [[3, 3]], "labels": []}, 400, "same length"),
    ("post", "/api/images/1/predict", {"points": [[3]], "labels": [1]}, 400, "points[0]"),
    ("post", "/api/images/1/predict", {}, 400, "at least one point"),
    ("post", "/api/images/1/predict", {"points": [[3, 3]], "labels": [1], "clicks": 1}, 400, "unknown field"),
    ("post", "/api/images/1/predict", {"points": [[3, 3]], "labels": [1], "multimask": "yes"}, 400, "multimask"),
    ("post", "/api/images/1/predict", [1, 2], 400, "JSON object"),
    ("post", "/api/images/1/annotations", {"rle": {"size": [256, 256], "counts": "0{{"}, "category": "x"}, 400,
     "outside COCO's alphabet"),
    ("post", "/api/images/1/annotations", {"rle": {"size": [256, 256], "counts": "0"}, "category": "x"}, 400,
     "cover 0 pixels"),
    ("post", "/api/images/1/annotations", {"rle": {"size": [256, 256], "counts": "PP"}, "category": "x"}, 400,
     "ends in the middle"),
    ("post", "/api/images/1/annotations", {"rle": {"size": [10, 10], "counts": [100]}, "category": "x"}, 400,
     "does not match"),
    ("post", "/api/images/1/annotations", {"rle": {"size": [256, 256], "counts": [-1, 65537]}, "category": "x"}, 400,
     "non-negative"),
    ("post", "/api/images/1/annotations", {"rle": {"size": [256, 256], "counts": 5}, "category": "x"}, 400,
     "COCO string"),
    ("post", "/api/images/1/annotations", {"rle": "abc", "category": "x"}, 400, "rle must be an object"),
    ("post", "/api/images/1/annotations", {"rle": {"size": [256, 256], "counts": [65536]}, "category": "x"}, 400,
     "empty"),
    ("post", "/api/images/1/annotations", {"polygon": [[0, 0, 5]], "category": "x"}, 400, "polygon ring 0"),
    ("post", "/api/images/1/annotations", {"polygon": [[0, 0, 5, 0, 5, 5]]}, 400, "missing 'category'"),
    ("post", "/api/images/1/annotations", {"polygon": [[0, 0, 5, 0, 5, 5]], "category": " "}, 400, "category"),
    ("post", "/api/images/1/annotations", {"category": "x"}, 400, "exactly one of"),
    ("post", "/api/images/1/prefill", {"points_per_side": 0}, 400, "points_per_side"),
    ("post", "/api/images/1/prefill", {"pred_iou_thresh": 2}, 400, "pred_iou_thresh"),
    ("patch", "/api/annotations/1", {"name": "x"}, 400, "relabel"),
    ("get", "/api/nothing", None, 404, "no such endpoint"),
]


@pytest.mark.parametrize("method, path, body, status, message", BAD_REQUESTS, ids=lambda v: str(v)[:40])
def test_bad_input_gets_a_4xx_json_message(setup, method, path, body, status, message):
    client, _, _ = setup
    response = getattr(client, method)(path, **({} if body is None else {"json": body}))
    assert response.status_code == status, response.text
    if message is not None:
        assert message in response.json()["error"]


def test_malformed_json_wrong_type_and_oversized_bodies(setup):
    client, _, _ = setup
    headers = {"content-type": "application/json"}
    bad = client.post("/api/images/1/predict", content=b'{"points": [[1, 2]', headers=headers)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    binary = client.post("/api/images/1/annotations", content=b"\xff\xfe", headers=headers)
    assert binary.status_code == 400 and "not valid JSON" in binary.json()["error"]
    plain = client.post("/api/images/1/predict", content=b'{"points": [[1, 2]], "labels": [1]}',
                        headers={"content-type": "text/plain"})
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]
    large = client.post("/api/images/1/annotations", content=b"[" + b"1," * 40000 + b"1]", headers=headers)
    assert large.status_code == 413 and "larger than the limit" in large.json()["error"]

    def chunks():
        for _ in range(100):
            yield b" " * 1024

    streamed = client.post("/api/images/1/annotations", content=chunks(), headers=headers)
    assert streamed.status_code == 413 and "larger than the limit" in streamed.json()["error"]
    # ... and the server keeps running.
    assert client.post("/api/images/1/predict", json={"points": [[20, 20]], "labels": [1]}).status_code == 200


def test_host_header_check_when_bound_to_loopback(model, tmp_path, scenes):
    write_images(tmp_path / "images", scenes)
    service = AnnotationService(tmp_path / "images", tmp_path / "out.json", model, prefetch=False)
    client = TestClient(create_app(service, allowed_hosts=["127.0.0.1", "localhost"]), base_url="http://127.0.0.1:8765")
    assert client.get("/api/images").status_code == 200
    assert client.get("/api/images", headers={"host": "attacker.example:8765"}).status_code == 400
    service.close()


# ------------------------------------------------------------------ page and command
def test_page_and_static_files_need_no_network(setup):
    client, _, _ = setup
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert "http://" not in response.text and "https://" not in response.text and "@import" not in response.text
    assert "http://" not in page.text and "https://" not in page.text


def test_cli_prints_the_url_and_warns_off_loopback(tmp_path, scenes, monkeypatch, capsys):
    import uvicorn

    from promptseg.cli import main

    write_images(tmp_path / "images", scenes)
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({**kwargs, "app": app}))
    assert main(["annotate", str(tmp_path / "images"), "--out", str(tmp_path / "out.json"), "--port", "9001",
                 "--cache-size", "3"]) == 0
    captured = capsys.readouterr()
    assert "http://127.0.0.1:9001/" in captured.out and "NO authentication" not in captured.err
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 9001
    service = calls[-1]["app"].state.service
    assert service.cache.capacity == 3 and service.prefill_defaults["pred_iou_thresh"] == 0.5  # bundled model
    assert main(["annotate", str(tmp_path / "images"), "--out", str(tmp_path / "out.json"), "--host", "0.0.0.0",
                 "--prefill-points-per-side", "4", "--prefill-iou-thresh", "0.7"]) == 0
    assert calls[-1]["app"].state.service.prefill_defaults == {
        "points_per_side": 4, "pred_iou_thresh": 0.7, "stability_score_thresh": 0.8,
    }
    captured = capsys.readouterr()
    assert "NO authentication" in captured.err and "http://0.0.0.0:8765/" in captured.out
    assert json.loads((tmp_path / "out.json").read_text())["images"]
    for bad in (["--cache-size", "0"], ["--prefill-points-per-side", "0"]):
        with pytest.raises(SystemExit):
            main(["annotate", str(tmp_path / "images"), "--out", str(tmp_path / "o.json"), *bad])
