"""``promptseg find``: every instance of a described concept in an image or a folder of images.

One image: ``mask_<i>.png``, ``overlay.png`` and ``result.json`` in --out. A folder: the same in
``--out/<image file>/`` per image (with a progress bar), plus ``annotations.json`` (a COCO dataset
of the found instances) and ``results.json`` (COCO results, score = concept similarity).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.amg.rle import encode_rle
from promptseg.cli.common import add_model_arguments, load_model
from promptseg.cli.reports import write_prediction
from promptseg.io import OBJECT_CATEGORY, CocoCollection, list_images, read_image


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "find", help="find every instance of a text concept in an image or folder (masks, overlay, JSON / COCO)"
    )
    parser.add_argument("source", type=Path, metavar="IMAGE_OR_DIR", help="an image file or a folder of images")
    parser.add_argument("--text", required=True, metavar="PHRASE", help='what to find, e.g. "red star"')
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_model_arguments(parser)
    parser.add_argument("--clip-model", help="an open_clip architecture (e.g. ViT-B-16); default: the bundled concept encoder")
    parser.add_argument("--clip-checkpoint", type=Path, help="the --clip-model's local weights file or folder (never downloaded)")
    parser.add_argument("--threshold", type=float, help="minimum concept similarity (default: the encoder's own)")
    parser.add_argument("--points-per-side", type=int, help="proposal grid side (default 12 for the bundled SAM, else 32)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from promptseg.find import BUNDLED_PROPOSALS, find_instances, proposal_generator
    from promptseg.text.loading import load_concept_encoder

    if args.clip_model is not None and args.clip_checkpoint is None:
        raise ValueError("--clip-model needs --clip-checkpoint (a local weights file or folder; nothing is downloaded)")
    images = list_images(args.source)
    model, description = load_model(args)
    print(f"model: {description}")
    bundled = args.model is None and args.checkpoint is None
    settings = dict(BUNDLED_PROPOSALS) if bundled else {}
    if args.points_per_side is not None:
        settings["points_per_side"] = args.points_per_side
    generator = proposal_generator(model, **settings)
    if args.clip_checkpoint is not None:
        encoder = load_concept_encoder("open_clip", args.clip_model or "ViT-B-16", args.clip_checkpoint, model.device)
    else:
        encoder = load_concept_encoder("bundled", device=model.device)
    print(f"concept encoder: {encoder.name}")
    info = {"query": args.text, "model": description, "concept_encoder": encoder.name}
    if args.source.is_file():
        image = read_image(images[0])
        found = find_instances(image, args.text, sam=generator, concept_encoder=encoder, threshold=args.threshold)
        _write(args.out, image, found, {**info, "image": str(images[0])})
        print(f"{len(found)} instance(s) of {args.text!r}; wrote {args.out}")
        return 0
    coco = CocoCollection([{**OBJECT_CATEGORY, "name": args.text}])
    with tqdm(images, desc="find", unit="image") as bar:
        for path in bar:
            image = read_image(path)
            found = find_instances(image, args.text, sam=generator, concept_encoder=encoder, threshold=args.threshold)
            _write(args.out / path.name, image, found, {**info, "image": str(path)})
            image_id = coco.add_image(path.name, *image.shape[:2])
            rles = encode_rle(torch.from_numpy(np.stack([r["segmentation"] for r in found]))).to_coco() if found else []
            for record, rle in zip(found, rles):
                coco.add_instance(image_id, rle, record["area"], record["bbox"], record["score"])
            bar.set_postfix(found=len(found))
    coco.write(args.out / "annotations.json", args.out / "results.json")
    print(f"{len(coco.annotations)} instance(s) of {args.text!r} in {len(images)} image(s); wrote {args.out}")
    return 0


def _write(out: Path, image: np.ndarray, found: list[dict], info: dict) -> None:
    """mask_<i>.png, overlay.png and result.json (score: concept similarity) in ``out``."""
    masks = np.stack([r["segmentation"] for r in found]) if found else np.zeros((0, *image.shape[:2]), bool)
    write_prediction(out, image, masks, np.array([r["score"] for r in found]), info=info)
