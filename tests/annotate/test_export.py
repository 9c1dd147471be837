"""Exports of the annotations file, each read back by its usual reader: pycocotools for COCO (RLE and
polygons), a YOLO-seg parser that follows ultralytics' documented label format, and PIL for the PNG
masks; plus the command line (`promptseg annotate export`)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

mask_utils = pytest.importorskip("pycocotools.mask")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("yaml")
from pycocotools.coco import COCO  # noqa: E402

from promptseg.annotate import AnnotationStore, list_images  # noqa: E402
from promptseg.annotate.formats import (  # noqa: E402
    DEFAULT_TOLERANCE, export_annotations, export_bytes, load_dataset, mask_rings, object_polygons, rings_mask,
)
from promptseg.data.synthetic import generate_scene  # noqa: E402
from tests._support import read_yolo_seg  # noqa: E402


def rle_of(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode()}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def framed(height: int = 80, width: int = 100) -> np.ndarray:
    """A square ring (a hole in it) with an island in the hole, and a second part apart."""
    mask = np.zeros((height, width), bool)
    mask[10:60, 10:60] = True
    mask[20:50, 20:50] = False
    mask[30:40, 30:40] = True
    mask[65:75, 70:95] = True
    return mask


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """An annotations file: a.png with a scene's objects (classes by shape) and the framed mask; b.png done
    with no objects; c.png skipped with an object; d.png new with none."""
    root = tmp_path_factory.mktemp("export")
    scene = generate_scene(4)
    height, width = scene.image.shape[:2]
    (root / "images").mkdir()
    for name in ("a", "b", "c", "d"):
        Image.fromarray(scene.image).save(root / "images" / f"{name}.png")
    store = AnnotationStore(root / "annotations.json", list_images(root / "images"), labels=["blob", "frame"])
    plain = [k for k in range(len(scene.masks)) if scene.parents[k] < 0][:4]
    masks = {}
    for k in plain:
        stored = store.add(1, rle_of(scene.masks[k]), "blob")
        masks[stored["id"]] = scene.masks[k]
    frame = np.zeros((height, width), bool)
    frame[:80, :100] = framed()
    stored = store.add(1, rle_of(frame), "frame")
    masks[stored["id"]] = frame
    store.set_state(2, "done")
    store.add(3, rle_of(scene.masks[plain[0]]), "blob")
    store.set_state(3, "skipped")
    return root, masks, (height, width)


def test_polygons_are_exact_at_tolerance_zero_and_keep_holes():
    mask = framed()
    rings = mask_rings(mask, 0)
    assert [r["hole"] for r in rings].count(True) == 1
    assert (rings_mask([r["points"] for r in rings], *mask.shape) == mask).all()
    polygons = object_polygons(mask, 0)
    assert len(polygons) == 3  # the frame (its hole joined in), the island, the second part
    decoded = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, *mask.shape))).astype(bool)
    assert (decoded == mask).all()
    loose = object_polygons(mask, DEFAULT_TOLERANCE)
    assert sum(len(p) for p in loose) <= sum(len(p) for p in polygons)


def test_polygon_tolerance_bounds_the_error_on_real_masks():
    scene = generate_scene(2)
    for tolerance, floor in ((0.0, 1.0), (DEFAULT_TOLERANCE, 0.95), (1.0, 0.85)):
        worst = min(
            iou(mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(object_polygons(m, tolerance), *m.shape))).astype(bool), m)
            for m in scene.masks
        )
        print(f"tolerance {tolerance} px: worst IoU {worst:.3f} over {len(scene.masks)} objects")
        assert worst >= floor


def test_coco_rle_round_trip_through_pycocotools(annotated, tmp_path):
    root, masks, _ = annotated
    summary = export_annotations(load_dataset(root / "annotations.json"), "coco-rle", tmp_path / "coco.json")
    coco = COCO(str(tmp_path / "coco.json"))
    assert sorted(image["file_name"] for image in coco.loadImgs(coco.getImgIds())) == ["a.png", "b.png"]
    assert summary["objects"] == len(masks) and [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["blob", "frame"]
    for annotation in coco.loadAnns(coco.getAnnIds()):
        assert set(annotation) == {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"}
        assert (coco.annToMask(annotation).astype(bool) == masks[annotation["id"]]).all()
    assert "promptseg" not in json.loads((tmp_path / "coco.json").read_text())


def test_coco_polygon_round_trip_through_pycocotools(annotated, tmp_path):
    root, masks, _ = annotated
    export_annotations(load_dataset(root / "annotations.json"), "coco-polygon", tmp_path / "poly.json")
    coco = COCO(str(tmp_path / "poly.json"))
    scores = {}
    for annotation in coco.loadAnns(coco.getAnnIds()):
        assert isinstance(annotation["segmentation"], list)
        assert all(len(ring) >= 6 and len(ring) % 2 == 0 for ring in annotation["segmentation"])
        scores[annotation["id"]] = iou(coco.annToMask(annotation).astype(bool), masks[annotation["id"]])
    print(f"COCO polygons (tolerance {DEFAULT_TOLERANCE} px): IoU with the masks {sorted(scores.values())}")
    assert min(scores.values()) >= 0.95
    frame_id = max(masks)
    back = coco.annToMask(coco.loadAnns([frame_id])[0]).astype(bool)
    assert not back[25, 25] and back[35, 35]  # the hole stays empty, the island in it stays filled


def test_yolo_seg_round_trip_through_a_parser_of_the_documented_format(annotated, tmp_path):
    root, masks, (height, width) = annotated
    export_annotations(load_dataset(root / "annotations.json"), "yolo-seg", tmp_path / "yolo")
    names, labels = read_yolo_seg(tmp_path / "yolo")
    assert names == {0: "blob", 1: "frame"}
    assert set(labels) == {"a", "b"} and labels["b"] == []  # done without objects: an empty label file
    ordered = [masks[k] for k in sorted(masks)]
    assert [cls for cls, _ in labels["a"]] == [0] * (len(ordered) - 1) + [1]
    for (cls, points), mask in zip(labels["a"], ordered):
        pixels = points * (width, height)
        # ultralytics' polygon2mask: the vertices cast to int32, cv2.fillPoly (boundary pixels included) ...
        filled = np.zeros((height, width), np.uint8)
        cv2.fillPoly(filled, [np.asarray(pixels, dtype=np.int32)], 1)
        # ... and COCO's rasteriser reads the same vertices on pixel edges
        exact = mask_utils.decode(mask_utils.frPyObjects([pixels.reshape(-1).tolist()], height, width))[:, :, 0].astype(bool)
        print(f"class {cls}: IoU {iou(exact, mask):.3f} (pycocotools), {iou(filled.astype(bool), mask):.3f} (cv2.fillPoly)")
        assert iou(exact, mask) >= 0.95 and iou(filled.astype(bool), mask) >= 0.75
    assert not exact[25, 25] and exact[35, 35]  # the last (framed) object keeps its hole through one polygon


def test_png_masks_hold_instance_ids_and_classes(annotated, tmp_path):
    root, masks, _ = annotated
    export_annotations(load_dataset(root / "annotations.json"), "png-masks", tmp_path / "png")
    index = json.loads((tmp_path / "png" / "index.json").read_text())
    assert index["classes"] == ["blob", "frame"] == (tmp_path / "png" / "classes.txt").read_text().split()
    instances = np.asarray(Image.open(tmp_path / "png" / "instances" / "a.png"))
    semantic = np.asarray(Image.open(tmp_path / "png" / "semantic" / "a.png"))
    assert instances.dtype == np.uint16 and semantic.dtype == np.uint8
    for entry in index["images"]["a"]["instances"]:
        mask = masks[entry["annotation_id"]]
        later = [masks[e["annotation_id"]] for e in index["images"]["a"]["instances"] if e["value"] > entry["value"]]
        visible = mask & ~np.any(later, axis=0) if later else mask
        assert ((instances == entry["value"]) == visible).all()
        assert (semantic[visible] == entry["class"] + 1).all()
    assert (instances == 0).sum() == (~np.any(list(masks.values()), axis=0)).sum()
    assert not np.asarray(Image.open(tmp_path / "png" / "instances" / "b.png")).any()
    assert not (tmp_path / "png" / "instances" / "c.png").exists()  # skipped


def test_downloads_are_json_or_zip(annotated):
    root, masks, _ = annotated
    data = load_dataset(root / "annotations.json")
    content, media_type, name = export_bytes(data, "coco-polygon")
    assert media_type == "application/json" and name.endswith(".json") and len(json.loads(content)["annotations"]) == len(masks)
    content, media_type, name = export_bytes(data, "yolo-seg")
    names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert media_type == "application/zip" and {"data.yaml", "labels/a.txt", "labels/b.txt"} <= set(names)


def test_command_line_export(annotated, tmp_path, capsys):
    from promptseg.cli import main

    root, masks, _ = annotated
    assert main(["annotate", "export", str(root / "annotations.json"), "--format", "coco-polygon",
                 "--out", str(tmp_path / "p.json"), "--tolerance", "0"]) == 0
    out = capsys.readouterr().out
    assert f"{len(masks)} object(s) of 2 image(s)" in out and "tolerance 0.0 px" in out
    coco = COCO(str(tmp_path / "p.json"))
    for annotation in coco.loadAnns(coco.getAnnIds()):
        assert (coco.annToMask(annotation).astype(bool) == masks[annotation["id"]]).all()
    assert main(["annotate", "export", str(root / "annotations.json"), "--format", "png-masks",
                 "--out", str(tmp_path / "png")]) == 0
    assert (tmp_path / "png" / "semantic" / "a.png").is_file()
    for bad in (["--format", "xml"], ["--format", "yolo-seg", "--tolerance", "-1"], []):
        with pytest.raises(SystemExit):
            main(["annotate", "export", str(root / "annotations.json"), "--out", str(tmp_path / "x"), *bad])
    with pytest.raises(SystemExit):
        main(["annotate", "export", str(tmp_path / "missing.json"), "--format", "coco-rle", "--out", str(tmp_path / "y.json")])
