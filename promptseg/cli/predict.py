"""``promptseg predict``: segment an image, or a generated synthetic scene, from prompts.

Points and boxes are checked against the image by the annotation API's rule and message
(:func:`promptseg.prompts.validate.check_prompt_in_image`); a point off the image exits with
status 2 before the model is loaded. An image that cannot be read exits with status 1, naming
the file and the problem.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from promptseg.cli.common import add_model_arguments, load_model
from promptseg.cli.runs import output_folder
from promptseg.io import read_image
from promptseg.prompts.validate import check_prompt_in_image


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
    parser = subparsers.add_parser(
        "predict",
        help="segment an image (or a generated synthetic scene) from point, box and text prompts",
        description="Without --point/--box/--text: a synthetic scene gets one click per object; an image one click at "
        "its centre. --text needs text weights: the bundled ones (no --model/--checkpoint), or a --checkpoint written "
        "by `promptseg train --text`.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("image", type=Path, nargs="?", help="image file (any format Pillow reads)")
    source.add_argument("--synthetic-scene", type=int, metavar="SEED", help="generate a 256x256 synthetic scene instead")
    add_model_arguments(parser)
    parser.add_argument(
        "--point", type=_point, action="append", default=[], metavar="X,Y[,LABEL]",
        help="a click in pixels; LABEL 1 foreground (default) or 0 background; repeatable",
    )
    parser.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1", help="a box prompt in pixels")
    parser.add_argument("--text", metavar="PHRASE", help='a text prompt, e.g. "red ellipse" (alone or with --point/--box)')
    parser.add_argument("--clip-model", help="with --text: an open_clip architecture (e.g. ViT-B-16) as the concept encoder")
    parser.add_argument("--clip-checkpoint", type=Path, help="with --clip-model: its local weights file (no download)")
    parser.add_argument(
        "--match-z", type=float, default=None,
        help="with --text and open_clip: keep masks whose crop matches the text by the calibrated rule of "
        "promptseg.text.matching at this cut-off (default 3); other masks are dropped as no match",
    )
    parser.add_argument("--multimask", action="store_true", help="return 3 ambiguity masks instead of 1")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from promptseg.data.synthetic import generate_scene
    from promptseg.predictor import SamPredictor
    from promptseg.cli.reports import write_prediction
    from promptseg.masks import mask_iou

    output_folder(args.out)
    scene = None
    if args.synthetic_scene is not None:
        scene = generate_scene(args.synthetic_scene)
        image = scene.image
        args.out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(args.out / "scene.png")
    else:
        image = read_image(args.image)
    height, width = image.shape[:2]
    check_prompt_in_image([p[:2] for p in args.point] or None, args.box, width, height)
    if args.text is not None:
        from promptseg.cli.common import load_text_model_from_args

        model, text, description = load_text_model_from_args(args)
    else:
        model, description = load_model(args)
        text = None
    print(f"model: {description}")
    predictor = SamPredictor(model, text=text)
    predictor.set_image(image)

    points = np.array([p[:2] for p in args.point], dtype=np.float64) if args.point else None
    labels = np.array([p[2] for p in args.point], dtype=np.int64) if args.point else None
    box = np.array(args.box) if args.box is not None else None
    info = {"image": str(args.image) if scene is None else f"synthetic scene {args.synthetic_scene}", "model": description}
    if scene is not None and points is None and box is None and args.text is None:
        # One click per object, at the point farthest from its boundary; the best-ranked mask of each.
        points = scene.first_clicks()
        labels = np.ones(len(points), dtype=np.int64)
        prompts = [{"point_coords": p[None], "point_labels": labels[:1]} for p in points]
        all_masks, all_scores, _ = predictor.predict_many(prompts, multimask_output=True)
        best = all_scores.argmax(axis=1)
        masks, scores = all_masks[np.arange(len(best)), best], all_scores[np.arange(len(best)), best]
        ground_truth = mask_iou(torch.from_numpy(masks), torch.from_numpy(scene.masks)).tolist()
        info["prompt"] = {"one click per object": points.tolist()}
        result = write_prediction(args.out, image, masks, scores, points, labels, info=info, ground_truth_iou=ground_truth)
        print(f"scene has {len(masks)} objects; mean IoU of the best-ranked masks with the ground truth: {np.mean(ground_truth):.3f}")
    else:
        if points is None and box is None and args.text is None:
            points, labels = np.array([[width / 2, height / 2]]), np.array([1])
            print(f"no --point or --box given: using one foreground click at the image centre {points[0].tolist()}")
        masks, scores, _ = predictor.predict(points, labels, box, multimask_output=args.multimask, text=args.text)
        if text is not None and text.concept_encoder.open_vocabulary:
            masks, scores = _matching_masks(image, masks, scores, args, text.concept_encoder)
        info["prompt"] = {
            "text": args.text,
            "points": points.tolist() if points is not None else None,
            "labels": labels.tolist() if labels is not None else None,
            "box": args.box,
        }
        result = write_prediction(args.out, image, masks, scores, points, labels, [args.box] if args.box else (), info)
    best_score = max(record["score"] for record in result["masks"]) if result["masks"] else float("nan")
    print(f"wrote {len(result['masks'])} mask(s), overlay.png and result.json to {args.out} (best score {best_score:.3f})")
    return 0


def _matching_masks(
    image: np.ndarray, masks: np.ndarray, scores: np.ndarray, args: argparse.Namespace, encoder: object
) -> tuple[np.ndarray, np.ndarray]:
    """The masks whose object matches --text under the calibrated rule (an open-vocabulary encoder reads
    any text, so a mask alone would not say that nothing matched); says so when none does."""
    from promptseg.text.matching import DEFAULT_MATCH_Z, masks_match

    cut = DEFAULT_MATCH_Z if args.match_z is None else args.match_z
    matches, z = masks_match(encoder, image, list(masks), args.text, cut)
    if not matches.any():
        print(f"no match for {args.text!r}: the best mask scores z = {z.max():.2f}, below --match-z {cut:g} "
              "(promptseg.text.matching); no mask written")
    return masks[matches], scores[matches]
