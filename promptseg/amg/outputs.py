"""The files of a mask-generation run, shared by the local engine (``promptseg amg``) and the Ray
engine (:mod:`promptseg.distributed`), so both write byte-identical results.

Output folder layout::

    records/<image file>.json   masks of one image (COCO RLE, scores, prompt point, crop box);
                                written last and atomically, so its presence marks the image done
    overlays/<image file>.png   the masks drawn over the image, largest first
    masks/<image file>/NNNN.png one 0/255 PNG per mask (only when mask PNGs are asked for)
    annotations.json            COCO dataset (images, annotations, categories) of every done image
    results.json                COCO results (image_id, category_id, segmentation, score, bbox)

Rendering (:func:`render_image`: masks in, encoded files out) is apart from writing
(:func:`write_image`), so a worker can render and a driver write.
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from promptseg.amg.rle import encode_rle
from promptseg.drawing import overlay

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}


@dataclass
class ImageOutputs:
    """The encoded files of one image.

    Attributes:
        file_name: the image's file name (the key of its record).
        record_json: the record, as JSON text.
        overlay_png: the overlay, PNG bytes.
        mask_pngs: one PNG per mask in record order, or None when mask PNGs are not asked for.
        mask_count: the number of masks.
    """

    file_name: str
    record_json: str
    overlay_png: bytes
    mask_pngs: Optional[list[bytes]]
    mask_count: int


def run_settings(
    model: Optional[str],
    checkpoint: Optional[str],
    dtype: str,
    points_per_side: int,
    pred_iou_thresh: float,
    stability_score_thresh: float,
    crop_n_layers: int,
    min_mask_region_area: int,
) -> dict[str, Any]:
    """The settings stored in every record (a re-run warns when done images used others)."""
    return {
        "model": model,
        "checkpoint": checkpoint,
        "dtype": dtype,
        "points_per_side": points_per_side,
        "pred_iou_thresh": pred_iou_thresh,
        "stability_score_thresh": stability_score_thresh,
        "crop_n_layers": crop_n_layers,
        "min_mask_region_area": min_mask_region_area,
    }


def record_path(out: Path, file_name: str) -> Path:
    """``out/records/<file_name>.json``: its presence marks the image done."""
    return Path(out) / "records" / f"{file_name}.json"


def is_done(out: Path, file_name: str) -> bool:
    return record_path(out, file_name).is_file()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_image(
    file_name: str, image: np.ndarray, masks: list[dict[str, Any]], settings: dict[str, Any], mask_pngs: bool
) -> ImageOutputs:
    """Encode one image's overlay, optional mask PNGs and record.

    Args:
        file_name: the image's file name.
        image: (H, W, 3) uint8 RGB.
        masks: the generator's records with 'binary_mask' segmentations ((H, W) bool).
        settings: :func:`run_settings`.
        mask_pngs: also encode one PNG per mask.
    """
    height, width = image.shape[:2]
    binary = [mask["segmentation"] for mask in masks]
    stacked = np.stack(binary) if binary else np.zeros((0, height, width), dtype=bool)
    largest_first = np.argsort([-mask["area"] for mask in masks], kind="stable")
    pngs = [_png(Image.fromarray(mask.astype(np.uint8) * 255)) for mask in binary] if mask_pngs else None
    segmentations = encode_rle(torch.from_numpy(stacked)).to_coco()
    record = {
        "file_name": file_name,
        "height": height,
        "width": width,
        "settings": settings,
        "masks": [{**mask, "segmentation": rle} for mask, rle in zip(masks, segmentations)],
    }
    return ImageOutputs(
        file_name=file_name,
        record_json=json.dumps(record),
        overlay_png=_png(overlay(image, stacked[largest_first])),
        mask_pngs=pngs,
        mask_count=len(masks),
    )


def write_image(out: Path, outputs: ImageOutputs) -> None:
    """Write one image's overlay, optional mask PNGs and, last, its record; each file atomically."""
    out = Path(out)
    write_bytes_atomically(out / "overlays" / f"{outputs.file_name}.png", outputs.overlay_png)
    if outputs.mask_pngs is not None:
        mask_dir = out / "masks" / outputs.file_name
        mask_dir.mkdir(parents=True, exist_ok=True)
        for index, png in enumerate(outputs.mask_pngs):
            write_bytes_atomically(mask_dir / f"{index:04d}.png", png)
    write_bytes_atomically(record_path(out, outputs.file_name), outputs.record_json.encode())


def write_coco(out: Path, file_names: Sequence[str]) -> tuple[Path, Path]:
    """Gather the records of the done images, in the given order, into a COCO dataset file and a
    COCO results file; images without a record are left out."""
    out = Path(out)
    coco_images, annotations, results = [], [], []
    for file_name in file_names:
        path = record_path(out, file_name)
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        image_id = len(coco_images) + 1
        coco_images.append(
            {"id": image_id, "file_name": record["file_name"], "height": record["height"], "width": record["width"]}
        )
        for mask in record["masks"]:
            common = {
                "image_id": image_id,
                "category_id": CATEGORY["id"],
                "segmentation": mask["segmentation"],
                "area": mask["area"],
                "bbox": mask["bbox"],
            }
            annotations.append({"id": len(annotations) + 1, **common, "iscrowd": 0})
            results.append({**common, "score": mask["predicted_iou"], "stability_score": mask["stability_score"]})
    dataset = {"images": coco_images, "annotations": annotations, "categories": [CATEGORY]}
    write_json_atomically(out / "annotations.json", dataset)
    write_json_atomically(out / "results.json", results)
    return out / "annotations.json", out / "results.json"


def warn_on_other_settings(out: Path, settings: dict[str, Any]) -> None:
    """Say so on stderr when done images were segmented with other settings (they are kept, not redone)."""
    records_dir = Path(out) / "records"
    if not records_dir.is_dir():
        return
    differing = sorted(
        path.name[: -len(".json")]
        for path in records_dir.glob("*.json")
        if json.loads(path.read_text()).get("settings") != settings
    )
    if differing:
        print(
            f"warning: {len(differing)} done image(s) used other settings and are kept as they are "
            f"(e.g. {differing[0]}); use another --out to redo them",
            file=sys.stderr,
        )


def write_bytes_atomically(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``: a reader (or a
    resumed run) sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(payload)
    os.replace(temporary, path)


def write_json_atomically(path: Path, payload: Any) -> None:
    write_bytes_atomically(path, json.dumps(payload).encode())
