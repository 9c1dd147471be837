"""``promptseg predict``: segment one image from point and box prompts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from promptseg.build import build_sam, model_types

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RANDOM_WEIGHTS_WARNING = """
################################################################################
#  WARNING: no --checkpoint was given, so the model has RANDOM WEIGHTS.        #
#  The masks below are noise. Pass --checkpoint sam_vit_b_01ec64.pth (or any   #
#  official SAM checkpoint) for real segmentations.                            #
################################################################################
"""


def _numbers(text: str, count: Sequence[int], what: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if len(values) not in count:
        raise argparse.ArgumentTypeError(f"{what} needs {' or '.join(map(str, count))} numbers, got {text!r}")
    return values


def _point(text: str) -> tuple[float, float, int]:
    values = _numbers(text, (2, 3), "--point X,Y[,LABEL]")
    label = int(values[2]) if len(values) == 3 else 1
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(f"--point label must be 1 (foreground) or 0 (background), got {text!r}")
    return values[0], values[1], label


def _box(text: str) -> list[float]:
    return _numbers(text, (4,), "--box X0,Y0,X1,Y1")


def register(subparsers: argparse._SubParsersAction) -> None:
    predict = subparsers.add_parser("predict", help="segment an image from point and box prompts")
    predict.add_argument("image", type=Path, help="image file (any format Pillow reads)")
    predict.add_argument("--model", default="vit_b", choices=model_types(), help="model type (default vit_b)")
    predict.add_argument("--checkpoint", type=Path, help="official .pth or .safetensors weights")
    predict.add_argument(
        "--point", type=_point, action="append", default=[], metavar="X,Y[,LABEL]",
        help="a click in pixels; LABEL 1 foreground (default) or 0 background; repeatable",
    )
    predict.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1", help="a box prompt in pixels")
    predict.add_argument("--multimask", action="store_true", help="return 3 ambiguity masks instead of 1")
    predict.add_argument("--out", type=Path, required=True, help="output folder")
    predict.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    predict.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="model precision")
    predict.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from promptseg.predictor import SamPredictor
    from promptseg.postprocess import mask_areas, mask_boxes_xyxy
    from promptseg.visualize import overlay

    if not args.image.is_file():
        raise FileNotFoundError(f"image not found: {args.image}")
    image = np.array(Image.open(args.image).convert("RGB"))
    height, width = image.shape[:2]
    points = np.array([p[:2] for p in args.point], dtype=np.float64) if args.point else None
    labels = np.array([p[2] for p in args.point], dtype=np.int64) if args.point else None
    if points is None and args.box is None:
        points, labels = np.array([[width / 2, height / 2]]), np.array([1])
        print(f"no --point or --box given: using one foreground click at the image centre {points[0].tolist()}")
    if args.checkpoint is None:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = build_sam(args.model, checkpoint=args.checkpoint, device=device, dtype=DTYPES[args.dtype])
    print(f"model: {args.model} ({'random weights' if args.checkpoint is None else args.checkpoint}) on {device}, {args.dtype}")

    predictor = SamPredictor(model)
    predictor.set_image(image)
    box = np.array(args.box) if args.box is not None else None
    masks, scores, _ = predictor.predict(points, labels, box, multimask_output=args.multimask)

    args.out.mkdir(parents=True, exist_ok=True)
    mask_tensor = torch.from_numpy(masks)
    records = []
    for index, (mask, score, area, xyxy) in enumerate(
        zip(masks, scores, mask_areas(mask_tensor).tolist(), mask_boxes_xyxy(mask_tensor).tolist())
    ):
        name = f"mask_{index}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(args.out / name)
        records.append({"file": name, "score": float(score), "area": int(area), "box_xyxy": xyxy})
    overlay(image, masks, points, labels, [args.box] if args.box else ()).save(args.out / "overlay.png")
    result = {
        "image": str(args.image),
        "image_size": [height, width],
        "model": args.model,
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "prompt": {
            "points": points.tolist() if points is not None else None,
            "labels": labels.tolist() if labels is not None else None,
            "box": args.box,
        },
        "masks": records,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    best = max(records, key=lambda r: r["score"])
    print(f"wrote {len(records)} mask(s), overlay.png and result.json to {args.out} (best score {best['score']:.3f})")
    return 0
