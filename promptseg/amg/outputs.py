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
(:func:`write_image`), so a worker can render and a driver write. Records, resume and the failure
list are :class:`promptseg.io.RunRecords`'; every file is written atomically (:mod:`promptseg.io`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from promptseg.amg.rle import encode_rle
from promptseg.drawing import overlay
from promptseg.io import CocoCollection, RunRecords, write_bytes_atomically


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
        for index, png in enumerate(outputs.mask_pngs):
            write_bytes_atomically(mask_dir / f"{index:04d}.png", png)
    RunRecords(out).write(outputs.file_name, outputs.record_json)


def write_coco(out: Path, file_names: Sequence[str]) -> tuple[Path, Path]:
    """Gather the records of the done images, in the given order, into a COCO dataset file and a
    COCO results file; images without a record are left out."""
    out = Path(out)
    records = RunRecords(out)
    coco = CocoCollection()
    for file_name in file_names:
        if not records.is_done(file_name):
            continue
        record = records.read(file_name)
        image_id = coco.add_image(record["file_name"], record["height"], record["width"])
        for mask in record["masks"]:
            coco.add_instance(
                image_id, mask["segmentation"], mask["area"], mask["bbox"], mask["predicted_iou"],
                stability_score=mask["stability_score"],
            )
    return coco.write(out / "annotations.json", out / "results.json")


def orphaned_temp_folders(out: Path) -> list[Path]:
    """The folders of an amg run where a killed run may have left temporary files."""
    out = Path(out)
    return [out, out / "records", out / "overlays", *sorted(p for p in (out / "masks").glob("*") if p.is_dir())]
