"""``promptseg zeroshot edges|proposals|instances``: the paper's zero-shot transfer tasks over a folder
of images (:mod:`promptseg.zeroshot`), with progress bars, batched encoding and resume.

- ``edges DIR --out OUT``: one 8-bit PNG edge map per image, ``OUT/<image stem>.png`` (value / 255 is
  the edge strength in [0, 1]); images whose PNG exists are skipped.
- ``proposals DIR --out proposals.json``: COCO results (category 1) of the best ``--k`` proposals per image.
- ``instances DIR --detections dets.json --out segm.json``: COCO segmentation results for the detections.

Proposals and instances keep one record per image in ``<out>.work/records/`` (:class:`promptseg.io.RunRecords`;
written last, atomically; its presence marks the image done, and a re-run skips it), then gather them
into ``--out``. Images are read by :func:`promptseg.io.read_image` (EXIF orientation applied). Image ids come
from ``--annotations`` (a COCO file listing the images) or, COCO's convention, from the integer file stem.

An image that cannot be read or processed is listed in ``failures.jsonl`` (in the edge-map folder, or in
``<out>.work/``) and the run goes on; a re-run skips it unless ``--retry-failed`` (:mod:`promptseg.cli.runs`).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from promptseg.cli.common import add_generator_arguments, add_model_arguments, generator_settings, load_model
from promptseg.cli.runs import (
    DECODE,
    GENERATE,
    ImageRun,
    add_run_arguments,
    output_file,
    output_folder,
    plan_images,
)
from promptseg.io import RunRecords, list_images, read_image, write_bytes_atomically, write_json_atomically

PROPOSAL_CATEGORY = 1
# The generator settings ``zeroshot proposals`` takes (defaults: the model's "proposals" preset).
PROPOSAL_SETTINGS = ("points_per_side", "pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_n_layers")


def register(subparsers: argparse._SubParsersAction) -> None:
    zeroshot = subparsers.add_parser(
        "zeroshot", help="zero-shot tasks of the SAM paper: edges, object proposals, instances from detector boxes"
    )
    tasks = zeroshot.add_subparsers(dest="task", required=True)

    edges = tasks.add_parser("edges", help="edge maps (16x16 point grid, NMS, Sobel of mask probabilities, edge NMS)")
    _common(edges, "output folder of edge-map PNGs")
    edges.add_argument("--points-per-side", type=int, help="point grid side (default 16: 768 masks)")
    edges.add_argument("--nms-thresh", type=float, help="box NMS IoU threshold (default 0.7)")
    edges.add_argument("--no-thin", action="store_true", help="skip edge NMS (write the raw combined Sobel map)")
    edges.set_defaults(run=run_edges)

    proposals = tasks.add_parser("proposals", help="class-agnostic mask proposals (COCO results)")
    _common(proposals, "COCO results file to write")
    proposals.add_argument("--k", type=int, default=1000, help="proposals per image (default 1000)")
    add_generator_arguments(proposals, PROPOSAL_SETTINGS, purpose="proposals")
    proposals.add_argument(
        "--score", choices=("predicted_iou", "stability_score", "product"), default="predicted_iou",
        help="what ranks the proposals (default predicted_iou)",
    )
    _annotations_argument(proposals)
    proposals.set_defaults(run=run_proposals)

    instances = tasks.add_parser("instances", help="masks for a detector's boxes (COCO segmentation results)")
    _common(instances, "COCO results file to write")
    instances.add_argument("--detections", type=Path, required=True, help="COCO detections JSON (image_id, bbox, score, category_id)")
    instances.add_argument(
        "--mask-choice", choices=("single", "best"), default="single",
        help="single: SAM's single-mask output for a box (the paper, default); best: best-scored of 3",
    )
    instances.add_argument(
        "--score", choices=("detection", "detection_x_iou"), default="detection",
        help="result score: the detector's (default) or times SAM's predicted IoU",
    )
    _annotations_argument(instances)
    instances.set_defaults(run=run_instances)


def _common(parser: argparse.ArgumentParser, out_help: str) -> None:
    parser.add_argument("images", type=Path, metavar="DIR", help="folder of images")
    parser.add_argument("--out", type=Path, required=True, help=f"{out_help} (re-runs resume)")
    parser.add_argument("--batch-size", type=int, default=4, help="images encoded together (default 4)")
    add_model_arguments(parser)
    add_run_arguments(parser)


def _annotations_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--annotations", type=Path, default=None,
        help="COCO JSON whose 'images' give each file's id (default: the integer file stem, as COCO names files)",
    )


# ------------------------------------------------------------------ helpers
def image_ids(images: Sequence[Path], annotations: Optional[Path]) -> dict[str, int]:
    """File name -> COCO image id, from the annotations' image list or from integer file stems."""
    if annotations is not None:
        if not annotations.is_file():
            raise FileNotFoundError(f"annotations file not found: {annotations}")
        listed = _listed_images(annotations)
        missing = [path.name for path in images if path.name not in listed]
        if missing:
            raise ValueError(f"{len(missing)} image(s) are not listed in {annotations}, e.g. {missing[0]}")
        return {path.name: listed[path.name] for path in images}
    ids = {}
    for path in images:
        if not path.stem.isdigit():
            raise ValueError(
                f"cannot tell the image id of {path.name}: name files by their integer id (COCO's 000000397133.jpg) "
                "or pass --annotations with the dataset's image list"
            )
        ids[path.name] = int(path.stem)
    return ids


def _listed_images(annotations: Path) -> dict[str, int]:
    """File name -> image id of a COCO (or LVIS) file's image list, or a ValueError naming the file."""
    document = read_json(annotations)
    try:
        # COCO lists file_name; LVIS lists only coco_url, whose last part is the COCO file name.
        return {
            Path(image.get("file_name") or image["coco_url"]).name: int(image["id"])
            for image in document["images"]
        }
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(
            f"{annotations} is not a COCO file with an image list (each image with 'id' and 'file_name' or "
            f"'coco_url'): {type(error).__name__}: {error}"
        ) from None


def read_json(path: Path) -> Any:
    """The JSON document in ``path``, or a ValueError naming the file and where the JSON breaks."""
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a JSON file ({error})") from None


def _settings(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    settings = {"model": args.model, "checkpoint": str(args.checkpoint) if args.checkpoint else None, "dtype": args.dtype}
    return {**settings, **{name: getattr(args, name) for name in names}}


def _work_dir(out: Path) -> Path:
    """``<out>.work``: holds ``records/<image file>.json``, one per done image."""
    return out.with_name(out.name + ".work")


def _run_records(
    args: argparse.Namespace,
    settings: dict[str, Any],
    process: Callable[[Any, list[Path], list[np.ndarray]], list[list[dict[str, Any]]]],
    make_worker: Callable[[Any], Any],
    images: list[Path],
    ids: dict[str, int],
    task: str,
) -> int:
    """Process the images without a record in batches, write a record per image, then gather ``--out``.
    An image that fails is listed in ``<out>.work/failures.jsonl``; the others go on."""
    work = _work_dir(args.out)
    records = RunRecords(work)
    plan = records.plan(images, retry_failed=args.retry_failed)
    print(plan.line(work))
    records.warn_on_other_settings(settings)
    tally = ImageRun(f"promptseg zeroshot {task}", records, plan, strict=args.strict)
    todo = plan.todo
    if todo:
        model, description = load_model(args)
        print(f"model: {description}")
        worker = make_worker(model)
        with tqdm(total=len(todo), desc=task, unit="image") as bar:
            for start in range(0, len(todo), args.batch_size):
                chunk, decoded = _decoded(tally, todo[start : start + args.batch_size])
                per_image = tally.attempt_batch(
                    chunk, decoded, GENERATE,
                    lambda pairs: process(worker, [path for path, _ in pairs], [image for _, image in pairs]),
                )
                for path, results in zip(chunk, per_image):
                    if results is not None:
                        records.write(path.name, {"file_name": path.name, "image_id": ids[path.name],
                                                  "settings": settings, "results": results})
                        tally.succeed()
                bar.update(min(args.batch_size, len(todo) - start))
    gathered, done = [], 0
    for path in images:
        if records.is_done(path.name):
            gathered.extend(records.read(path.name)["results"])
            done += 1
    write_json_atomically(args.out, gathered)
    print(f"wrote {len(gathered)} result(s) for {done} of {len(images)} image(s) to {args.out}")
    return tally.finish()


def _decoded(tally: ImageRun, chunk: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, np.ndarray]]]:
    """The images of ``chunk`` that read (their paths, and (path, image) pairs); the others are listed as failed."""
    pairs = []
    for path in chunk:
        image = tally.attempt(path, DECODE, lambda: read_image(path))
        if image is not None:
            pairs.append((path, image))
    return [path for path, _ in pairs], pairs


# ------------------------------------------------------------------- tasks
def run_edges(args: argparse.Namespace) -> int:
    from promptseg.zeroshot.edges import EdgeDetector

    output_folder(args.out)
    images = list_images(args.images, allow_file=False)
    records = RunRecords(args.out)
    plan = plan_images(records, images, args.retry_failed, lambda path: (args.out / f"{path.stem}.png").is_file())
    print(plan.line(args.out))
    tally = ImageRun("promptseg zeroshot edges", records, plan, strict=args.strict)
    todo = plan.todo
    if todo:
        model, description = load_model(args)
        print(f"model: {description}")
        detector = EdgeDetector(
            model, points_per_side=args.points_per_side, nms_thresh=args.nms_thresh, thin=not args.no_thin
        )
        with tqdm(total=len(todo), desc="edges", unit="image") as bar:
            for start in range(0, len(todo), args.batch_size):
                chunk, decoded = _decoded(tally, todo[start : start + args.batch_size])
                edges = tally.attempt_batch(
                    chunk, decoded, GENERATE,
                    lambda pairs: detector.detect_batch([image for _, image in pairs], batch_size=len(pairs)),
                )
                for path, edge in zip(chunk, edges):
                    if edge is not None:
                        write_bytes_atomically(args.out / f"{path.stem}.png", edge_png(edge))
                        tally.succeed()
                bar.update(min(args.batch_size, len(todo) - start))
    print(f"edge maps in {args.out}")
    return tally.finish()


def edge_png(edge: np.ndarray) -> bytes:
    """An (H, W) float edge map in [0, 1] as 8-bit grey PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(edge, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def run_proposals(args: argparse.Namespace) -> int:
    from promptseg.zeroshot.proposals import ProposalGenerator

    output_file(args.out)
    images = list_images(args.images, allow_file=False)
    ids = image_ids(images, args.annotations)
    generator = generator_settings(args, PROPOSAL_SETTINGS, purpose="proposals")
    settings = {**_settings(args, "k", "score"), **{name: getattr(generator, name) for name in PROPOSAL_SETTINGS}}

    def make(model: Any) -> ProposalGenerator:
        return ProposalGenerator(model, generator, score=args.score)

    def process(generator: ProposalGenerator, chunk: list[Path], images: list[np.ndarray]) -> list[list[dict]]:
        per_image = generator.propose_batch(images, k=args.k, batch_size=len(chunk))
        return [
            [{"image_id": ids[path.name], "category_id": PROPOSAL_CATEGORY, **proposal} for proposal in proposals]
            for path, proposals in zip(chunk, per_image)
        ]

    return _run_records(args, settings, process, make, images, ids, "proposals")


def run_instances(args: argparse.Namespace) -> int:
    from promptseg.zeroshot.instances import BoxInstanceSegmenter, check_detections

    output_file(args.out)
    if not args.detections.is_file():
        raise FileNotFoundError(f"detections file not found: {args.detections}")
    detections = check_detections(read_json(args.detections))
    images = list_images(args.images, allow_file=False)
    ids = image_ids(images, args.annotations)
    known = set(ids.values())
    unknown = sorted({d["image_id"] for d in detections} - known)
    if unknown:
        raise ValueError(f"{len(unknown)} detected image id(s) have no image in {args.images}, e.g. {unknown[0]}")
    by_image: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in known}
    for detection in detections:
        by_image[detection["image_id"]].append(detection)
    settings = {**_settings(args, "mask_choice", "score"), "detections": str(args.detections)}

    def make(model: Any) -> BoxInstanceSegmenter:
        return BoxInstanceSegmenter(model, mask_choice=args.mask_choice, score=args.score)

    def process(segmenter: BoxInstanceSegmenter, chunk: list[Path], images: list[np.ndarray]) -> list[list[dict]]:
        return segmenter.segment_images(images, [by_image[ids[p.name]] for p in chunk])

    return _run_records(args, settings, process, make, images, ids, "instances")
