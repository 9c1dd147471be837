"""``promptseg find``: every instance of a described concept in an image or a folder of images.

One image: ``mask_<i>.png``, ``overlay.png`` and ``result.json`` in --out. A folder: the same in
``--out/<image file>/`` per image (with a progress bar), plus ``annotations.json`` (a COCO dataset
of the found instances) and ``results.json`` (COCO results, score = concept similarity; when
nothing was found in any image, a COCO file with an empty annotation list, since pycocotools'
``loadRes`` cannot load an empty results list). An image that cannot be read or searched is
listed in ``--out/failures.jsonl`` and the run goes on (:mod:`promptseg.cli.runs`). Words of
--text outside the concept encoder's vocabulary are named in a warning; a phrase with none it
knows is refused (exit status 2).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.amg.rle import encode_rle
from promptseg.cli.common import add_model_arguments, load_model
from promptseg.cli.reports import write_prediction
from promptseg.cli.runs import DECODE, GENERATE, ImageRun, add_run_arguments, output_folder, plan_images
from promptseg.io import OBJECT_CATEGORY, CocoCollection, RunRecords, list_images, read_image, write_json_atomically


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
    parser.add_argument(
        "--threshold", type=float,
        help="minimum concept similarity (default: the bundled encoder's own; for open_clip the calibrated rule "
        "of promptseg.text.matching: the phrase must score --match-z null spreads above phrases naming nothing)",
    )
    parser.add_argument(
        "--match-z", type=float, default=None,
        help="with open_clip and no --threshold: the calibrated rule's cut-off in standard deviations (default 3)",
    )
    parser.add_argument("--points-per-side", type=int, help="proposal grid side (default 12 for the bundled SAM, else 32)")
    add_run_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from promptseg.find import BUNDLED_PROPOSALS, find_instances, proposal_generator
    from promptseg.text.loading import load_concept_encoder
    from promptseg.text.matching import DEFAULT_MATCH_Z
    from promptseg.text.understanding import UnknownWordsWarning, understood_text

    if args.clip_model is not None and args.clip_checkpoint is None:
        raise ValueError("--clip-model needs --clip-checkpoint (a local weights file or folder; nothing is downloaded)")
    output_folder(args.out)
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
    reading = understood_text(encoder, args.text, "--text")
    if not reading.open_vocabulary:
        print(f"understood: {' '.join(reading.known)}")
    info = {"query": args.text, "model": description, "concept_encoder": encoder.name}
    options = {"sam": generator, "concept_encoder": encoder, "threshold": args.threshold,
               "match_z": DEFAULT_MATCH_Z if args.match_z is None else args.match_z}
    records = RunRecords(args.out)
    plan = plan_images(records, images, args.retry_failed)
    tally = ImageRun("promptseg find", records, plan, strict=args.strict)
    if plan.failed:
        print(f"{len(plan.failed)} image(s) failed before and are skipped (--retry-failed retries them)")
    single = args.source.is_file()
    coco = CocoCollection([{**OBJECT_CATEGORY, "name": args.text}])
    with tqdm(plan.todo, desc="find", unit="image", disable=single) as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownWordsWarning)  # said once above
        for path in bar:
            image = tally.attempt(path, DECODE, lambda: read_image(path))
            if image is None:
                continue
            found = tally.attempt(path, GENERATE, lambda: find_instances(image, args.text, **options))
            if found is None:
                continue
            _write(args.out if single else args.out / path.name, image, found, {**info, "image": str(path)})
            image_id = coco.add_image(path.name, *image.shape[:2])
            rles = encode_rle(torch.from_numpy(np.stack([r["segmentation"] for r in found]))).to_coco() if found else []
            for record, rle in zip(found, rles):
                coco.add_instance(image_id, rle, record["area"], record["bbox"], record["score"])
            tally.succeed()
            bar.set_postfix(found=len(found))
    searched = f"in {tally.succeeded} image(s)" if not single else f"in {images[0]}"
    if not single:
        annotations, results = args.out / "annotations.json", args.out / "results.json"
        coco.write(annotations, results)
        if not coco.results:  # pycocotools' loadRes cannot load an empty list; COCO() loads this file
            write_json_atomically(results, coco.dataset())
    if tally.succeeded:
        count = len(coco.annotations)
        print(f"{count} instance(s) of {args.text!r} {searched}; wrote {args.out}" if count else
              f"no instances of {args.text!r} {searched}; wrote {args.out}")
    return tally.finish()


def _write(out: Path, image: np.ndarray, found: list[dict], info: dict) -> None:
    """mask_<i>.png, overlay.png and result.json (score: concept similarity) in ``out``."""
    masks = np.stack([r["segmentation"] for r in found]) if found else np.zeros((0, *image.shape[:2]), bool)
    write_prediction(out, image, masks, np.array([r["score"] for r in found]), info=info)
