"""``promptseg amg``: automatic mask generation over an image or a folder, written in COCO format.

Output folder layout::

    records/<image file>.json   masks of one image (COCO RLE, scores, prompt point, crop box);
                                written last, so its presence marks the image done
    overlays/<image file>.png   the masks drawn over the image, largest first
    masks/<image file>/NNNN.png one 0/255 PNG per mask (--format png)
    annotations.json            COCO dataset (images, annotations, categories) of every done image
    results.json                COCO results (image_id, category_id, segmentation, score, bbox)

Re-running on the same folder skips the images that already have a record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from promptseg.cli.common import add_model_arguments, load_model

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}


def register(subparsers: argparse._SubParsersAction) -> None:
    amg = subparsers.add_parser(
        "amg", help="segment everything in an image or a folder of images (COCO-format results, resumable)"
    )
    amg.add_argument("images", type=Path, metavar="IMAGE_OR_DIR", help="an image file, or a folder of images")
    add_model_arguments(amg)
    amg.add_argument("--out", type=Path, required=True, help="output folder (re-runs resume in it)")
    amg.add_argument(
        "--format", choices=("coco", "png"), default="coco",
        help="coco: masks as COCO RLE in the JSON files (default); png: also one PNG per mask",
    )
    amg.add_argument("--points-per-side", type=int, default=32, help="prompt grid side (default 32)")
    amg.add_argument("--pred-iou-thresh", type=float, default=0.88, help="minimum predicted IoU (default 0.88)")
    amg.add_argument(
        "--stability-score-thresh", type=float, default=0.95, help="minimum stability score (default 0.95)"
    )
    amg.add_argument("--crop-n-layers", type=int, default=0, help="crop layers to also prompt (default 0)")
    amg.add_argument(
        "--min-mask-region-area", type=int, default=0,
        help="remove holes and islands smaller than this many pixels (default 0: off)",
    )
    amg.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from promptseg.automatic import SamAutomaticMaskGenerator

    images = _list_images(args.images)
    records_dir = args.out / "records"
    settings = {
        "model": args.model,
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "dtype": args.dtype,
        "points_per_side": args.points_per_side,
        "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_score_thresh,
        "crop_n_layers": args.crop_n_layers,
        "min_mask_region_area": args.min_mask_region_area,
    }
    todo = [path for path in images if not (records_dir / f"{path.name}.json").is_file()]
    print(f"{len(images)} image(s): {len(images) - len(todo)} already done in {args.out}, {len(todo)} to do")
    _warn_on_other_settings(records_dir, settings)
    if todo:
        model, description = load_model(args)
        print(f"model: {description}")
        generator = SamAutomaticMaskGenerator(
            model,
            points_per_side=args.points_per_side,
            pred_iou_thresh=args.pred_iou_thresh,
            stability_score_thresh=args.stability_score_thresh,
            crop_n_layers=args.crop_n_layers,
            min_mask_region_area=args.min_mask_region_area,
        )
        with tqdm(todo, desc="amg", unit="image") as bar:
            for path in bar:
                image = np.array(Image.open(path).convert("RGB"))
                masks = generator.generate(image)
                _write_image(args.out, path, image, masks, settings, write_pngs=args.format == "png")
                bar.set_postfix(masks=len(masks))
    annotations, results = _write_coco(args.out, images)
    print(f"wrote {annotations} and {results}")
    return 0


def _list_images(path: Path) -> list[Path]:
    """The image itself, or the images directly inside a folder, sorted by name."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"image or folder not found: {path}")
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
    return images


def _write_image(
    out: Path, path: Path, image: np.ndarray, masks: list[dict[str, Any]], settings: dict[str, Any], write_pngs: bool
) -> None:
    """Write one image's overlay, optional mask PNGs and, last, its record."""
    from promptseg.amg.rle import encode_rle
    from promptseg.cli.visualize import overlay

    height, width = image.shape[:2]
    binary = [mask["segmentation"] for mask in masks]
    stacked = np.stack(binary) if binary else np.zeros((0, height, width), dtype=bool)
    largest_first = np.argsort([-mask["area"] for mask in masks], kind="stable")
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    overlay(image, stacked[largest_first]).save(out / "overlays" / f"{path.name}.png")
    if write_pngs:
        mask_dir = out / "masks" / path.name
        mask_dir.mkdir(parents=True, exist_ok=True)
        for index, mask in enumerate(binary):
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_dir / f"{index:04d}.png")
    segmentations = encode_rle(torch.from_numpy(stacked)).to_coco()
    record = {
        "file_name": path.name,
        "height": height,
        "width": width,
        "settings": settings,
        "masks": [{**mask, "segmentation": rle} for mask, rle in zip(masks, segmentations)],
    }
    _write_json_atomically(out / "records" / f"{path.name}.json", record)


def _write_coco(out: Path, images: list[Path]) -> tuple[Path, Path]:
    """Gather the records of the done images into a COCO dataset file and a COCO results file."""
    coco_images, annotations, results = [], [], []
    for path in images:
        record_path = out / "records" / f"{path.name}.json"
        if not record_path.is_file():
            continue
        record = json.loads(record_path.read_text())
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
            results.append(
                {**common, "score": mask["predicted_iou"], "stability_score": mask["stability_score"]}
            )
    dataset = {"images": coco_images, "annotations": annotations, "categories": [CATEGORY]}
    _write_json_atomically(out / "annotations.json", dataset)
    _write_json_atomically(out / "results.json", results)
    return out / "annotations.json", out / "results.json"


def _warn_on_other_settings(records_dir: Path, settings: dict[str, Any]) -> None:
    """Say so when done images were segmented with other settings (they are kept, not redone)."""
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


def _write_json_atomically(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)
