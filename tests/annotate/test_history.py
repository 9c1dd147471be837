"""The annotation server's full history, classes, image states and stored proposals: the store on its own
(no model), and the HTTP endpoints that reach them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
mask_utils = pytest.importorskip("pycocotools.mask")
from fastapi.testclient import TestClient  # noqa: E402

from promptseg.annotate import AnnotationService, AnnotationStore, create_app, list_images  # noqa: E402
from promptseg.annotate.history import HISTORY_IMAGES, HISTORY_PER_IMAGE, replay  # noqa: E402
from promptseg.annotate.store import UNLABELLED  # noqa: E402
from promptseg.bundled import build_bundled_sam  # noqa: E402

SIZE = 64


def rle_of(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode()}


def square(x: int, y: int, side: int = 10) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[y:y + side, x:x + side] = True
    return mask


def write_images(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(np.full((SIZE, SIZE, 3), 40 * index, np.uint8)).save(folder / f"img{index}.png")
    return folder


@pytest.fixture()
def store(tmp_path):
    return AnnotationStore(tmp_path / "out.json", list_images(write_images(tmp_path / "images")))


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def objects(store: AnnotationStore, image_id: int) -> list[tuple[int, str, int]]:
    return [(a["id"], a["category"], a["area"]) for a in store.annotations(image_id)]


# ------------------------------------------------------------------ store
def test_every_action_undoes_and_redoes_and_the_history_replays(store):
    first = store.add(1, rle_of(square(0, 0)), "car")
    second = store.add(1, rle_of(square(20, 20)), None)
    assert second["category"] == UNLABELLED
    store.relabel_many(1, [first["id"], second["id"]], "truck")
    store.edit(first["id"], rle_of(square(0, 0, 12)), prompt={"points": [[3, 3]], "labels": [1], "box": None})
    store.delete_many(1, [second["id"]])
    after = objects(store, 1)
    assert after == [(first["id"], "truck", 144)]

    # The undo list, replayed from an image with no objects, gives the image's objects.
    data = read(store.path)
    ops = data["promptseg"]["history"]["1"]["undo"]
    rebuilt = replay(ops)
    names = {c["id"]: c["name"] for c in rebuilt["categories"]}
    assert [(a["id"], names[a["category_id"]], a["area"]) for a in rebuilt["annotations"]] == after

    states = []
    for _ in range(5):
        store.undo(1)
        states.append(objects(store, 1))
    assert states == [
        [(first["id"], "truck", 144), (second["id"], "truck", 100)],  # delete undone
        [(first["id"], "truck", 100), (second["id"], "truck", 100)],  # edit undone
        [(first["id"], "car", 100), (second["id"], UNLABELLED, 100)],  # relabel undone
        [(first["id"], "car", 100)],  # second accept undone
        [],
    ]
    with pytest.raises(Exception, match="nothing to undo"):
        store.undo(1)
    for expected in reversed(states[:-1]):
        store.redo(1)
        assert objects(store, 1) == expected
    store.redo(1)
    assert objects(store, 1) == after
    assert store.annotation(first["id"])["prompt"]["points"] == [[3.0, 3.0]]


def test_undo_with_a_stale_seq_is_refused_and_a_new_action_drops_the_redo_list(store):
    a = store.add(2, rle_of(square(5, 5)), "x")
    seq = store.snapshot(2)["history"]["undo"][-1]["seq"]
    with pytest.raises(Exception, match="another tab"):
        store.undo(2, seq + 1)
    store.undo(2, seq)
    assert store.snapshot(2)["history"]["redo"][-1]["seq"] == seq
    store.add(2, rle_of(square(30, 30)), "y")
    assert store.snapshot(2)["history"]["redo"] == []
    assert a["id"] not in [x["id"] for x in store.annotations(2)]


def test_history_is_per_image_and_kept_in_the_file_across_a_restart(tmp_path):
    folder = write_images(tmp_path / "images")
    store = AnnotationStore(tmp_path / "out.json", list_images(folder))
    one = store.add(1, rle_of(square(0, 0)), "a")
    store.add(2, rle_of(square(0, 0)), "b")
    store.delete(one["id"])
    again = AnnotationStore(tmp_path / "out.json", list_images(folder))
    assert [op["text"] for op in again.snapshot(1)["history"]["undo"]] == [f"accept #{one['id']} (a)", f"delete #{one['id']}"]
    again.undo(1)
    assert [a["id"] for a in again.annotations(1)] == [one["id"]]
    assert len(again.snapshot(2)["history"]["undo"]) == 1  # image 2's history untouched


def test_history_is_bounded_per_image_and_in_images(tmp_path, monkeypatch):
    import promptseg.annotate.history as history

    monkeypatch.setattr(history, "HISTORY_PER_IMAGE", 3)
    monkeypatch.setattr(history, "HISTORY_IMAGES", 2)
    store = AnnotationStore(tmp_path / "out.json", list_images(write_images(tmp_path / "images")))
    for _ in range(5):
        store.add(1, rle_of(square(0, 0)), "a")
    assert len(store.snapshot(1)["history"]["undo"]) == 3
    store.add(2, rle_of(square(0, 0)), "a")
    store.add(3, rle_of(square(0, 0)), "a")
    assert store.snapshot(1)["history"]["undo"] == []  # image 1 changed least recently: its history went
    assert len(store.annotations(1)) == 5
    assert HISTORY_PER_IMAGE >= 50 and HISTORY_IMAGES >= 8


def test_an_operation_that_no_longer_fits_is_dropped_with_a_409(store):
    added = store.add(1, rle_of(square(0, 0)), "a")
    data = read(store.path)
    data["annotations"] = []  # deleted by hand, outside the server
    store.path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="no longer in the file") as raised:
        store.undo(1)
    assert raised.value.status == 409
    assert store.snapshot(1)["history"]["undo"] == [] and added["id"]


def test_fixed_labels_come_first_in_order_and_are_enforced(tmp_path):
    store = AnnotationStore(tmp_path / "out.json", list_images(write_images(tmp_path / "images")), labels=["cat", "dog"])
    assert [c["name"] for c in store.categories()] == ["cat", "dog"]
    assert store.add(1, rle_of(square(0, 0)), "dog")["category_id"] == 2
    with pytest.raises(Exception, match="not one of the labels"):
        store.add(1, rle_of(square(0, 0)), "bird")
    assert store.add(1, rle_of(square(0, 0)), None)["category"] == UNLABELLED
    for bad in ([], ["a", "a"], ["a", " "], "a,b"):
        with pytest.raises(ValueError):
            AnnotationStore(tmp_path / "other.json", list_images(tmp_path / "images"), labels=bad)


def test_image_states_and_stored_proposals(store):
    assert set(store.states().values()) == {"new"}
    store.add(1, rle_of(square(0, 0)), "a")
    assert store.states()[1] == "in_progress"
    store.set_state(2, "done")
    store.set_state(3, "skipped")
    assert store.states() == {1: "in_progress", 2: "done", 3: "skipped"}
    with pytest.raises(Exception, match="state must be one of"):
        store.set_state(1, "finished")

    proposals = store.set_proposals(1, [{"rle": rle_of(square(30, 30)), "score": 0.9},
                                        {"rle": rle_of(square(40, 5)), "score": 0.8}])
    assert [p["id"] for p in proposals] == [1, 2]
    accepted = store.add(1, proposals[0]["rle"], "a", proposal_id=1)
    store.reject_proposal(1, 2)
    assert store.snapshot(1)["proposals"] == []
    store.undo(1)  # the rejection
    store.undo(1)  # the accept: the proposal comes back, in its place
    assert [p["id"] for p in store.snapshot(1)["proposals"]] == [1, 2]
    assert accepted["id"] not in [a["id"] for a in store.annotations(1)]
    with pytest.raises(Exception, match="no proposal 7"):
        store.reject_proposal(1, 7)


# ------------------------------------------------------------------ HTTP
@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("history-api")
    service = AnnotationService(write_images(root / "images"), root / "out.json", build_bundled_sam(), prefetch=False,
                                labels=["cat", "dog", "bird"])
    yield TestClient(create_app(service)), root
    service.close()


def test_http_accept_relabel_many_delete_undo_redo_and_state(client):
    http, root = client
    listed = http.get("/api/images").json()
    assert listed["labels"] == ["cat", "dog", "bird"] and listed["categories"] == ["cat", "dog", "bird"]
    assert listed["progress"] == {"new": 3, "in_progress": 0, "done": 0, "skipped": 0, "total": 3}
    ids = [http.post("/api/images/1/annotations", json={"rle": rle_of(square(10 * k, 0)), "category": None}).json()["id"]
           for k in range(3)]
    relabelled = http.post("/api/images/1/relabel", json={"ids": ids[:2], "category": "dog"}).json()
    assert [a["category"] for a in relabelled["annotations"]] == ["dog", "dog"]
    http.post("/api/images/1/delete", json={"ids": [ids[2]]})
    snapshot = http.get("/api/images/1/annotations").json()
    assert [a["id"] for a in snapshot["annotations"]] == ids[:2] and snapshot["state"] == "in_progress"
    last = snapshot["history"]["undo"][-1]
    assert last["op"] == "delete" and last["ids"] == [ids[2]]
    undone = http.post("/api/images/1/undo", json={"seq": last["seq"]}).json()
    assert undone["done"]["seq"] == last["seq"] and len(undone["image"]["annotations"]) == 3
    stale = http.post("/api/images/1/undo", json={"seq": last["seq"]})
    assert stale.status_code == 409 and "another tab" in stale.json()["error"]
    redone = http.post("/api/images/1/redo", headers={"content-type": "application/json"}).json()  # an empty body
    assert len(redone["image"]["annotations"]) == 2
    assert http.put("/api/images/1/state", json={"state": "done"}).json()["state"] == "done"
    assert http.get("/api/images").json()["progress"]["done"] == 1
    on_disk = json.loads((root / "out.json").read_text())
    assert next(i for i in on_disk["images"] if i["id"] == 1)["state"] == "done"


def test_http_edit_with_rle_and_polygon_and_the_object_polygon(client):
    http, _ = client
    stored = http.post("/api/images/2/annotations", json={"rle": rle_of(square(10, 10, 20)), "category": "cat"}).json()
    grown = http.put(f"/api/annotations/{stored['id']}", json={"rle": rle_of(square(10, 10, 30))}).json()
    assert grown["area"] == 900 and grown["category"] == "cat"
    rings = http.get(f"/api/annotations/{stored['id']}/polygon", params={"tolerance": 0}).json()["rings"]
    assert rings == [{"points": [10.0, 10.0, 10.0, 40.0, 40.0, 40.0, 40.0, 10.0], "hole": False, "outer": 0}]
    # a square with a square hole, as even-odd rings
    framed = http.put(f"/api/annotations/{stored['id']}", json={
        "polygon": [[0, 0, 30, 0, 30, 30, 0, 30], [10, 10, 20, 10, 20, 20, 10, 20]], "fill_rule": "evenodd"}).json()
    assert framed["area"] == 900 - 100
    union = http.put(f"/api/annotations/{stored['id']}", json={"polygon": [[0, 0, 30, 0, 30, 30, 0, 30]]}).json()
    assert union["area"] == 900
    http.post("/api/images/2/undo", headers={"content-type": "application/json"})  # an empty body
    assert http.get("/api/images/2/annotations").json()["annotations"][0]["area"] == 800


def test_http_object_prompt_keeps_logits_for_refinement(client):
    http, _ = client
    predicted = http.post("/api/images/3/predict", json={"points": [[30, 30]], "labels": [1], "multimask": False}).json()
    stored = http.post("/api/images/3/annotations", json={
        "rle": predicted["masks"][0], "category": "bird", "mask_input": predicted["mask_input"],
        "prompt": {"points": [[30, 30]], "labels": [1], "box": None}}).json()
    prompt = http.get(f"/api/annotations/{stored['id']}/prompt").json()
    assert prompt["points"] == [[30.0, 30.0]] and prompt["labels"] == [1] and isinstance(prompt["mask_input"], str)
    refined = http.post("/api/images/3/predict", json={"points": [[30, 30], [50, 50]], "labels": [1, 0],
                                                       "mask_input": prompt["mask_input"], "multimask": False})
    assert refined.status_code == 200


BAD = [
    ("post", "/api/images/1/relabel", {"ids": [], "category": "cat"}, 400, "non-empty list"),
    ("post", "/api/images/1/relabel", {"ids": [1]}, 400, "missing 'category'"),
    ("post", "/api/images/1/relabel", {"ids": [1], "category": "horse"}, 400, "not one of the labels"),
    ("post", "/api/images/1/relabel", {"ids": [99999], "category": "cat"}, 404, "unknown annotation id"),
    ("post", "/api/images/1/delete", {"ids": ["1"]}, 400, "non-empty list"),
    ("post", "/api/images/1/delete", {"ids": [1], "extra": 1}, 400, "unknown field"),
    ("post", "/api/images/1/undo", {"seq": "x"}, 400, "seq must be"),
    ("post", "/api/images/99/undo", None, 404, "unknown image id"),
    ("put", "/api/images/1/state", {"state": "finished"}, 400, "state must be one of"),
    ("put", "/api/images/1/state", {}, 400, "state must be a string"),
    ("put", "/api/annotations/99999", {"rle": {"size": [64, 64], "counts": [4096]}}, 404, "unknown annotation id"),
    ("put", "/api/annotations/x", {"rle": {}}, 400, "decimal integer"),
    ("delete", "/api/images/1/proposals/42", None, 404, "no proposal 42"),
    ("get", "/api/annotations/99999/polygon", None, 404, "unknown annotation id"),
    ("get", "/api/export/xml", None, 404, "unknown export format"),
    ("get", "/api/export/coco-polygon?tolerance=-1", None, 400, "tolerance must be in"),
    ("post", "/api/images/1/annotations", {"proposal": 5, "category": None}, 404, "no proposal 5"),
    ("post", "/api/images/1/annotations", {"proposal": "a", "category": None}, 400, "proposal must be"),
    ("post", "/api/images/1/annotations", {"polygon": [[0, 0, 5, 0, 5, 5]], "category": "x", "prompt": {"points": [[999, 1]], "labels": [1]}},
     400, "prompt: points[0]"),
]


@pytest.mark.parametrize("method, path, body, status, message", BAD, ids=lambda v: str(v)[:40])
def test_http_new_endpoints_refuse_bad_input(client, method, path, body, status, message):
    http, _ = client
    empty = {"headers": {"content-type": "application/json"}} if method in ("post", "put", "patch") else {}  # an empty JSON body
    response = getattr(http, method)(path, **(empty if body is None else {"json": body}))
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_command_line_labels_and_labels_file(tmp_path, monkeypatch, capsys):
    import uvicorn

    from promptseg.cli import main

    folder = write_images(tmp_path / "images")
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(app))
    assert main(["annotate", str(folder), "--out", str(tmp_path / "a.json"), "--labels", "cat, dog ,bird"]) == 0
    assert calls[-1].state.service.store.labels == ["cat", "dog", "bird"]
    assert "classes: 1=cat, 2=dog, 3=bird" in capsys.readouterr().out
    (tmp_path / "labels.txt").write_text("car\n\nperson\n")
    assert main(["annotate", str(folder), "--out", str(tmp_path / "b.json"), "--labels-file", str(tmp_path / "labels.txt")]) == 0
    assert [c["name"] for c in calls[-1].state.service.store.categories()] == ["car", "person"]
    for bad in (["--labels", "a,,b"], ["--labels", "a,a"], ["--labels", "a", "--labels-file", str(tmp_path / "labels.txt")],
                ["--format", "yolo-seg"]):
        with pytest.raises(SystemExit):
            main(["annotate", str(folder), "--out", str(tmp_path / "c.json"), *bad])
