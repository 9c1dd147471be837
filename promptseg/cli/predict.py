"""``promptseg predict``: segment an image, or a generated synthetic scene, from prompts.

Points and boxes are checked against the image by the annotation API's rule and message
(:func:`promptseg.prompts.validate.check_prompt_in_image`); a point off the image exits with
status 2 before the model is loaded. An image that cannot be read exits with status 1, naming
the file and the problem.

Given a folder, each image gets the same prompts (or one click at its centre) and its own
``--out/<file name>/``; an image that cannot be read, or that a prompt falls outside, is listed in
``--out/failures.jsonl`` and the run goes on (:mod:`promptseg.cli.runs`); a re-run skips the images
already done.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from promptseg.cli.common import add_model_arguments, load_model
from promptseg.cli.runs import DECODE, GENERATE, ImageRun, add_run_arguments, output_folder, plan_images
from promptseg.io import RunRecords, list_images, read_image
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
    source.add_argument(
        "image", type=Path, nargs="?",
        help="image file (any format Pillow reads), or a folder of images (each gets the same prompts)",
    )
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
    parser.add_argument("--out", type=Path, required=True, help="output folder (for a folder: one sub-folder per image)")
    add_run_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from promptseg.cli.reports import write_prediction
    from promptseg.data.synthetic import generate_scene
    from promptseg.masks import mask_iou

    output_folder(args.out)
    if args.image is not None and args.image.is_dir():
        return _run_folder(args)
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
    predictor, text, description = _predictor(args)
    predictor.set_image(image)
    source = str(args.image) if scene is None else f"synthetic scene {args.synthetic_scene}"
    info = {"image": source, "model": description}
    if scene is not None and not args.point and args.box is None and args.text is None:
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
        _say_centre_click(args)
        result = _predict_image(predictor, text, image, args, info, args.out)
    print(f"wrote {len(result['masks'])} mask(s), overlay.png and result.json to {args.out} ({_best(result)})")
    return 0


def _predictor(args: argparse.Namespace) -> tuple[object, object, str]:
    """(SamPredictor, the text model or None, the model's description), loaded as the arguments say."""
    from promptseg.predictor import SamPredictor

    if args.text is not None:
        from promptseg.cli.common import load_text_model_from_args

        model, text, description = load_text_model_from_args(args)
    else:
        model, description = load_model(args)
        text = None
    print(f"model: {description}")
    return SamPredictor(model, text=text), text, description


def _predict_image(
    predictor: object, text: object, image: np.ndarray, args: argparse.Namespace, info: dict, out: Path
) -> dict:
    """Predict from the command's prompts (one click at the centre when none) on the predictor's image
    and write masks, overlay and result.json into ``out``; returns the result record."""
    from promptseg.cli.reports import write_prediction

    height, width = image.shape[:2]
    points = np.array([p[:2] for p in args.point], dtype=np.float64) if args.point else None
    labels = np.array([p[2] for p in args.point], dtype=np.int64) if args.point else None
    box = np.array(args.box) if args.box is not None else None
    if points is None and box is None and args.text is None:
        points, labels = np.array([[width / 2, height / 2]]), np.array([1])
    masks, scores, _ = predictor.predict(points, labels, box, multimask_output=args.multimask, text=args.text)
    if text is not None and text.concept_encoder.open_vocabulary:
        masks, scores = _matching_masks(image, masks, scores, args, text.concept_encoder)
    info["prompt"] = {
        "text": args.text,
        "points": points.tolist() if points is not None else None,
        "labels": labels.tolist() if labels is not None else None,
        "box": args.box,
    }
    return write_prediction(out, image, masks, scores, points, labels, [args.box] if args.box else (), info)


def _run_folder(args: argparse.Namespace) -> int:
    """Every image of the folder ``args.image`` with the same prompts, each into ``--out/<file name>/``."""
    from tqdm.auto import tqdm

    images = list_images(args.image)
    records = RunRecords(args.out)
    plan = plan_images(records, images, args.retry_failed, is_done=lambda path: (args.out / path.name / "result.json").exists())
    tally = ImageRun("promptseg predict", records, plan, strict=args.strict)
    print(f"{len(images)} image(s): {len(plan.done)} already done in {args.out}, {len(plan.todo)} to do"
          + (f", {len(plan.failed)} failed before (--retry-failed retries them)" if plan.failed else ""))
    if not plan.todo:
        return tally.finish()
    predictor, text, description = _predictor(args)
    _say_centre_click(args)

    def predict(path: Path, image: np.ndarray) -> dict:
        check_prompt_in_image([p[:2] for p in args.point] or None, args.box, image.shape[1], image.shape[0])
        predictor.set_image(image)
        return _predict_image(predictor, text, image, args, {"image": str(path), "model": description}, args.out / path.name)

    for path in tqdm(plan.todo, desc="predict", unit="image"):
        image = tally.attempt(path, DECODE, lambda: read_image(path))
        if image is not None and tally.attempt(path, GENERATE, lambda: predict(path, image)) is not None:
            tally.succeed()
    print(f"wrote {tally.succeeded} image(s)' masks, overlays and result.json into {args.out}/<file name>/")
    return tally.finish()


def _say_centre_click(args: argparse.Namespace) -> None:
    if not args.point and args.box is None and args.text is None:
        print("no --point, --box or --text given: one foreground click at the centre of the image")


def _best(result: dict) -> str:
    best = max((record["score"] for record in result["masks"]), default=float("nan"))
    return f"best score {best:.3f}"


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
