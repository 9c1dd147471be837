"""What an export takes from the annotations file: its images (minus those left out), its classes in a
fixed order, and each image's objects as masks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from promptseg.annotate.coco_masks import decode_mask

COCO_IMAGE_KEYS = ("id", "file_name", "width", "height")
COCO_ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")


def load_dataset(path: Path) -> dict[str, Any]:
    """The annotations file written by ``promptseg annotate`` (or any COCO file with RLE masks)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"annotations file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a JSON file ({error})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise ValueError(f"{path} is not a COCO dataset (an object with lists 'images', 'annotations' and 'categories')")
    return data


def exported_images(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The images an export holds, by id: every image with objects, and images marked done without any
    (annotated as empty); images marked skipped, and new ones without objects, are left out."""
    annotated = {a["image_id"] for a in data["annotations"]}
    kept = [
        image for image in data["images"]
        if image.get("state") != "skipped" and (image["id"] in annotated or image.get("state") == "done")
    ]
    return sorted(kept, key=lambda image: image["id"])


def class_names(data: dict[str, Any]) -> list[str]:
    """Category names in id order: class i (0-based) of YOLO-seg and i + 1 of semantic PNGs."""
    return [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]


def class_index(data: dict[str, Any]) -> dict[int, int]:
    """category id -> 0-based class index (the order of :func:`class_names`)."""
    return {c["id"]: k for k, c in enumerate(sorted(data["categories"], key=lambda c: c["id"]))}


def image_objects(data: dict[str, Any], image: dict[str, Any]) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """(annotation, (H, W) bool mask) of one image's objects, in id order."""
    annotations = sorted((a for a in data["annotations"] if a["image_id"] == image["id"]), key=lambda a: a["id"])
    for annotation in annotations:
        segmentation = annotation["segmentation"]
        if not isinstance(segmentation, dict) or list(segmentation.get("size", [])) != [image["height"], image["width"]]:
            raise ValueError(
                f"annotation {annotation['id']}: expected a COCO RLE of size {[image['height'], image['width']]}, "
                f"got {str(segmentation)[:80]}"
            )
        counts = segmentation["counts"]
        if isinstance(counts, list):
            from pycocotools import mask as mask_utils

            rle = mask_utils.frPyObjects(segmentation, image["height"], image["width"])
            mask = mask_utils.decode(rle).astype(bool)
        else:
            mask = decode_mask(segmentation)
        yield annotation, mask


def unique_stems(images: list[dict[str, Any]]) -> dict[int, str]:
    """image id -> file stem; two images with one stem (a.jpg, a.png) are an error naming both."""
    stems: dict[str, str] = {}
    result: dict[int, str] = {}
    for image in images:
        stem = Path(image["file_name"]).stem
        if stem in stems:
            raise ValueError(
                f"images {stems[stem]!r} and {image['file_name']!r} share the stem {stem!r}; "
                "per-image files would overwrite each other (rename one)"
            )
        stems[stem] = image["file_name"]
        result[image["id"]] = stem
    return result
