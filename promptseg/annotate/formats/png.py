"""PNG mask export: per exported image, ``instances/<stem>.png`` (16-bit; 0 background, objects 1, 2, ...
in the order of their ids, a later object drawn over an earlier one where they overlap) and
``semantic/<stem>.png`` (0 background, class i + 1 for class i of ``classes.txt``; 8-bit up to 255
classes, else 16-bit), with ``index.json`` mapping each instance value to its annotation id and class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from promptseg.io import atomic_path, write_text_atomically
from promptseg.annotate.formats.dataset import class_index, class_names, exported_images, image_objects, unique_stems

MAX_INSTANCES = 65535


def image_masks(data: dict[str, Any], image: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """(H, W) uint16 instance ids, (H, W) uint16 class ids (class index + 1), and the instances' entries."""
    classes = class_index(data)
    instances = np.zeros((image["height"], image["width"]), np.uint16)
    semantic = np.zeros_like(instances)
    entries = []
    for value, (annotation, mask) in enumerate(image_objects(data, image), start=1):
        if value > MAX_INSTANCES:
            raise ValueError(f"image {image['file_name']!r} has more than {MAX_INSTANCES} objects; a 16-bit PNG holds no more")
        instances[mask] = value
        semantic[mask] = classes[annotation["category_id"]] + 1
        entries.append({"value": value, "annotation_id": annotation["id"], "class": classes[annotation["category_id"]]})
    return instances, semantic, entries


def write_png_masks(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Write the instance and semantic PNGs, ``classes.txt`` and ``index.json``; returns a summary."""
    folder = Path(folder)
    for name in ("instances", "semantic"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    names = class_names(data)
    semantic_type = np.uint8 if len(names) < 256 else np.uint16
    images = exported_images(data)
    stems = unique_stems(images)
    index: dict[str, Any] = {}
    objects = 0
    for image in images:
        instances, semantic, entries = image_masks(data, image)
        stem = stems[image["id"]]
        _write_png(folder / "instances" / f"{stem}.png", instances)
        _write_png(folder / "semantic" / f"{stem}.png", semantic.astype(semantic_type))
        index[stem] = {"file_name": image["file_name"], "instances": entries}
        objects += len(entries)
    write_text_atomically(folder / "classes.txt", "".join(f"{name}\n" for name in names))
    write_text_atomically(folder / "index.json", json.dumps({"classes": names, "images": index}, indent=1))
    return {"images": len(images), "objects": objects, "classes": names}


def _write_png(path: Path, pixels: np.ndarray) -> None:
    """``pixels`` (H, W) as a PNG at ``path``, replaced atomically."""
    with atomic_path(path) as temporary:
        Image.fromarray(pixels).save(temporary, format="PNG")
