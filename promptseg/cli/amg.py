"""``promptseg amg``: automatic mask generation over an image or a folder, written in COCO format.

The output folder's layout is :mod:`promptseg.amg.outputs`' (records, overlays, optional mask
PNGs, a merged COCO dataset and results). Re-running on the same folder skips the images that
already have a record (:class:`promptseg.io.RunRecords`). Images are read by
:func:`promptseg.io.read_image` (EXIF orientation applied). An image that cannot be read or
segmented is listed in ``failures.jsonl`` and the run goes on (:mod:`promptseg.cli.runs`).
``--engine ray`` runs the same generation on a Ray cluster (:mod:`promptseg.distributed`) and
writes the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from promptseg.amg.outputs import render_image, run_settings, write_coco, write_image
from promptseg.cli.common import add_generator_arguments, add_model_arguments, generator_settings, load_model
from promptseg.cli.runs import DECODE, GENERATE, ImageRun, add_run_arguments, output_folder, run_exit_code
from promptseg.io import RunRecords, list_images, read_image
from promptseg.settings import RUN_SETTINGS


def register(subparsers: argparse._SubParsersAction) -> None:
    amg = subparsers.add_parser(
        "amg", help="segment everything in an image or a folder of images (COCO-format results, resumable)"
    )
    amg.add_argument(
        "images", metavar="SOURCE",
        help="an image file or a folder of images; with --engine ray also a file list (.txt), a glob, "
        "or a remote URI that Ray Data reads (s3://, gs://)",
    )
    add_model_arguments(amg)
    amg.add_argument("--out", type=Path, required=True, help="output folder (re-runs resume in it)")
    amg.add_argument(
        "--format", choices=("coco", "png"), default="coco",
        help="coco: masks as COCO RLE in the JSON files (default); png: also one PNG per mask",
    )
    add_generator_arguments(amg, RUN_SETTINGS)
    add_run_arguments(amg)
    engine = amg.add_argument_group("engine (promptseg.distributed; --engine ray needs promptseg[ray])")
    engine.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: this process, one image at a time (default); ray: a Ray Data pipeline over an actor pool",
    )
    engine.add_argument(
        "--address", default=None,
        help="Ray cluster to join (e.g. auto, ray://head:10001); default: RAY_ADDRESS if set, else a local Ray",
    )
    engine.add_argument("--workers", type=int, default=1, help="model actors, each holding the model once (default 1)")
    engine.add_argument(
        "--gpus-per-worker", type=float, default=None,
        help="GPUs per actor (default: 1 when the cluster has GPUs, else 0)",
    )
    engine.add_argument("--batch-size", type=int, default=1, help="images per actor call (default 1)")
    amg.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return _run_on_ray(args)
    from promptseg.automatic import SamAutomaticMaskGenerator

    output_folder(args.out)
    images = list_images(Path(args.images))
    generator_options = generator_settings(args, RUN_SETTINGS)
    settings = run_settings(
        args.model, str(args.checkpoint) if args.checkpoint else None, args.dtype,
        **{name: getattr(generator_options, name) for name in RUN_SETTINGS},
    )
    records = RunRecords(args.out)
    plan = records.plan(images, retry_failed=args.retry_failed)
    print(plan.line(args.out))
    records.warn_on_other_settings(settings)
    tally = ImageRun("promptseg amg", records, plan, strict=args.strict)
    if plan.todo:
        model, description = load_model(args)
        print(f"model: {description}")
        generator = SamAutomaticMaskGenerator.from_settings(model, generator_options)
        with tqdm(plan.todo, desc="amg", unit="image") as bar:
            for path in bar:
                image = tally.attempt(path, DECODE, lambda: read_image(path))
                masks = None if image is None else tally.attempt(path, GENERATE, lambda: generator.generate(image))
                if masks is None:
                    continue
                if not masks:
                    bar.write(f"{path.name}: no mask: {generator.last_filter_counts[0].summary()}", file=sys.stderr)
                write_image(args.out, render_image(path.name, image, masks, settings, args.format == "png"))
                tally.succeed()
                bar.set_postfix(masks=len(masks))
    annotations, results = write_coco(args.out, [path.name for path in images])
    print(f"wrote {annotations} and {results}")
    return tally.finish()


def _run_on_ray(args: argparse.Namespace) -> int:
    """The same generation as a Ray Data pipeline (promptseg.distributed prints its summary)."""
    from promptseg.distributed import RayNotInstalledError, generate_masks

    output_folder(args.out)
    try:
        summary = generate_masks(
            args.images, args.out, model=args.model, checkpoint=args.checkpoint, device=args.device,
            dtype=args.dtype, settings=generator_settings(args, RUN_SETTINGS), mask_pngs=args.format == "png",
            address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
            batch_size=args.batch_size, retry_failed=args.retry_failed,
        )
    except RayNotInstalledError as error:
        print(f"promptseg amg: error: {error}", file=sys.stderr)
        return 2
    failures = summary.failures + summary.failed_before
    code = run_exit_code(summary.segmented + summary.already_done, failures, args.strict)
    if code:
        print(f"promptseg amg: exit status {code}: {failures} image(s) failed, listed in {summary.failures_path}",
              file=sys.stderr)
    return code
