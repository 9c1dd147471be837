"""COCO exports: the annotations file as plain COCO, with RLE masks (as stored) or polygons."""

from __future__ import annotations

from typing import Any

from promptseg.annotate.formats.dataset import (
    COCO_ANNOTATION_KEYS, COCO_IMAGE_KEYS, exported_images, image_objects,
)
from promptseg.annotate.formats.polygons import DEFAULT_TOLERANCE, object_polygons


def coco_dataset(data: dict[str, Any], polygons: bool = False, tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Plain COCO of the exported images (:func:`exported_images`): ``info``, ``images``, ``categories``
    and ``annotations`` with only COCO's keys. ``polygons``: each mask as polygons
    (:func:`object_polygons`, holes joined in), its ``area`` and ``bbox`` those of the mask."""
    images = exported_images(data)
    annotations = []
    for image in images:
        for annotation, mask in image_objects(data, image):
            entry = {key: annotation[key] for key in COCO_ANNOTATION_KEYS if key in annotation}
            if polygons:
                entry["segmentation"] = object_polygons(mask, tolerance)
            annotations.append(entry)
    info = {k: v for k, v in (data.get("info") or {}).items() if k != "next_annotation_id"}
    if polygons:
        info["polygon_tolerance_px"] = tolerance
    return {
        "info": info,
        "images": [{key: image[key] for key in COCO_IMAGE_KEYS} for image in images],
        "categories": sorted(data["categories"], key=lambda c: c["id"]),
        "annotations": annotations,
    }
