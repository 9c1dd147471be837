"""YOLO-seg export (the format of ultralytics' segmentation datasets).

One ``labels/<image stem>.txt`` per exported image, one line per object: ``class x1 y1 x2 y2 ...``,
the class a 0-based index into the names of ``data.yaml`` and the polygon's vertices divided by the
image's width and height (so in [0, 1]). An object in several parts, or with holes, is written as one
polygon whose parts are joined by zero-width cuts (:func:`object_polygons`). Images marked done with no
objects get an empty file (background images).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from promptseg.io import write_text_atomically
from promptseg.annotate.formats.dataset import class_index, class_names, exported_images, image_objects, unique_stems
from promptseg.annotate.formats.polygons import DEFAULT_TOLERANCE, join_rings, object_polygons


def yolo_lines(data: dict[str, Any], image: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE) -> list[str]:
    """The label lines of one image."""
    classes = class_index(data)
    size = np.array([image["width"], image["height"]], np.float64)
    lines = []
    for annotation, mask in image_objects(data, image):
        parts = [np.asarray(p).reshape(-1, 2) for p in object_polygons(mask, tolerance)]
        if not parts:
            continue
        points = parts[0]
        for part in parts[1:]:
            points = join_rings(points, part)
        normalised = np.clip(points / size, 0.0, 1.0).reshape(-1)
        lines.append(" ".join([str(classes[annotation["category_id"]])] + [f"{v:.6f}" for v in normalised]))
    return lines


def write_yolo_seg(data: dict[str, Any], folder: Path, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Write ``folder/labels/<stem>.txt`` per exported image and ``folder/data.yaml``; returns a summary."""
    folder = Path(folder)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    images = exported_images(data)
    stems = unique_stems(images)
    objects = 0
    for image in images:
        lines = yolo_lines(data, image, tolerance)
        objects += len(lines)
        write_text_atomically(folder / "labels" / f"{stems[image['id']]}.txt", "".join(line + "\n" for line in lines))
    names = class_names(data)
    write_text_atomically(folder / "data.yaml", data_yaml(names, tolerance))
    return {"images": len(images), "objects": objects, "classes": names}


def data_yaml(names: list[str], tolerance: float) -> str:
    """ultralytics' dataset file: where the images go, and the class names by index."""
    lines = [
        "# YOLO-seg labels written by `promptseg annotate export` "
        f"(polygon tolerance {tolerance} px).",
        "# ultralytics pairs images/<name>.<ext> with labels/<name>.txt: put (or link) the images in images/.",
        "path: .",
        "train: images",
        "val: images",
        f"nc: {len(names)}",
        "names:",
    ]
    lines += [f"  {index}: {json.dumps(name)}" for index, name in enumerate(names)]
    return "\n".join(lines) + "\n"
