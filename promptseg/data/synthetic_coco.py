"""Write synthetic scenes as a COCO instance dataset with boundary maps, so that the zero-shot tasks
(:mod:`promptseg.zeroshot`) and their evaluations (:mod:`promptseg.evaluate`) run end to end without
downloads.

Layout of the folder written by :func:`write_synthetic_coco`::

    images/<id:012d>.png        the scene (H, W, 3) RGB, named like COCO images (the integer stem is the id)
    instances.json              COCO instances: images, annotations (RLE masks, XYWH boxes, areas), categories
    boundaries/<id:012d>.png    0/255 boundary map of the scene's regions (the edge ground truth)

Scenes are drawn by :func:`promptseg.data.synthetic.generate_scene` and never altered.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from PIL import Image

from promptseg.amg.rle import encode_rle
from promptseg.data.shapes import SHAPE_KINDS
from promptseg.data.synthetic import Scene, generate_scene
from promptseg.io import write_json_atomically
from promptseg.masks import mask_boxes_xyxy

PathLike = Union[str, "os.PathLike[str]"]
CATEGORY_NAMES = (*SHAPE_KINDS, "part")
CATEGORIES = [{"id": index + 1, "name": name, "supercategory": "shape"} for index, name in enumerate(CATEGORY_NAMES)]


def scene_file_name(image_id: int) -> str:
    """COCO-style file name of image ``image_id``: the id zero-padded to 12 digits, ``.png``."""
    return f"{image_id:012d}.png"


def region_labels(scene: Scene) -> np.ndarray:
    """(H, W) int64 label map of the scene's visible regions: 0 background, k + 1 the own region of
    instance k (its visible pixels not covered by one of its parts)."""
    labels = np.zeros(scene.image.shape[:2], dtype=np.int64)
    for index in range(len(scene.masks)):
        labels[scene.own_region(index)] = index + 1
    return labels


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool one-pixel-wide boundaries of an (H, W) integer label map.

    A pixel is on a boundary when its label differs from its right or lower neighbour, so each
    boundary between two regions is marked once, on the upper/left side.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be an (H, W) label map, got shape {labels.shape}")
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edges[:-1, :] |= labels[1:, :] != labels[:-1, :]
    return edges


def scene_annotations(scene: Scene, image_id: int, first_annotation_id: int) -> list[dict[str, Any]]:
    """COCO annotations of a scene's instances (compressed RLE masks, XYWH boxes, areas, categories)."""
    if len(scene.masks) == 0:
        return []
    masks = torch.from_numpy(np.ascontiguousarray(scene.masks))
    rles = encode_rle(masks).to_coco()
    boxes = mask_boxes_xyxy(masks).tolist()
    areas = masks.flatten(1).sum(1).tolist()
    annotations = []
    for index, (rle, (x0, y0, x1, y1), area) in enumerate(zip(rles, boxes, areas)):
        annotations.append(
            {
                "id": first_annotation_id + index,
                "image_id": image_id,
                "category_id": CATEGORY_NAMES.index(scene.kinds[index]) + 1,
                "segmentation": rle,
                "area": int(area),
                # Inclusive pixel boxes -> XYWH covering whole pixels.
                "bbox": [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)],
                "iscrowd": 0,
            }
        )
    return annotations


def write_synthetic_coco(out_dir: PathLike, seeds: Sequence[Any], size: int = 256) -> Path:
    """Draw one scene per seed and write the folder described in the module docstring.

    Args:
        out_dir: folder to write (created; existing files of the same names are replaced).
        seeds: one seed per scene, as taken by ``generate_scene`` (e.g. ``[(HELD_OUT_SEED, i) for i in range(8)]``);
            image ids are 1, 2, ... in this order.
        size: side of the square scenes in pixels.
    Returns:
        The path of ``instances.json``.
    """
    if len(seeds) == 0:
        raise ValueError("write_synthetic_coco needs at least one seed, got none")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "boundaries").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, seed in enumerate(seeds, start=1):
        scene = generate_scene(seed, size=size)
        name = scene_file_name(image_id)
        Image.fromarray(scene.image).save(out / "images" / name)
        Image.fromarray(boundary_map(region_labels(scene)).astype(np.uint8) * 255).save(out / "boundaries" / name)
        images.append({"id": image_id, "file_name": name, "height": size, "width": size})
        annotations.extend(scene_annotations(scene, image_id, len(annotations) + 1))
    dataset = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    path = out / "instances.json"
    write_json_atomically(path, dataset)
    return path
