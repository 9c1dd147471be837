"""``promptseg annotate``: a local, browser-based assisted annotation tool (SAM's data engine, stages 1 and 2).

It serves a single page and a JSON API (docs/annotate.md) for the images directly inside IMAGE_DIR,
and writes every accepted object to --out (COCO, atomically). Re-running on the same --out resumes.

``promptseg annotate export ANNOTATIONS.json --format F --out PATH`` writes the annotations as COCO
(RLE or polygons), YOLO-seg or PNG masks.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from promptseg.annotate.formats import DEFAULT_TOLERANCE, FORMATS as EXPORT_FORMATS
from promptseg.annotate.prompts import prefill_defaults
from promptseg.cli.common import add_model_arguments, load_model, preset_help
from promptseg.settings import preset_for

USAGE = (
    "promptseg annotate IMAGE_DIR --out ANNOTATIONS.json [--labels a,b,c | --labels-file FILE] [options]\n"
    f"       promptseg annotate export ANNOTATIONS.json --format {{{','.join(EXPORT_FORMATS)}}} "
    "--out PATH [--tolerance PX]"
)

NO_AUTH_WARNING = (
    "warning: serving on {host}, not on 127.0.0.1: the annotation server has NO authentication; "
    "anyone who can reach {host}:{port} can read the images and change {out}"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    annotate = subparsers.add_parser(
        "annotate", usage=USAGE,
        help="annotate a folder of images in the browser: clicks to masks, pre-fill, COCO output; "
        "`annotate export` writes COCO, YOLO-seg or PNG masks",
    )
    annotate.add_argument("images", type=Path, metavar="IMAGE_DIR", help="folder of images to annotate (or `export`)")
    annotate.add_argument(
        "annotations", type=Path, nargs="?", metavar="ANNOTATIONS.json",
        help="with `export`: the annotations file to export",
    )
    annotate.add_argument(
        "--out", type=Path, required=True,
        help="COCO annotations file (resumed if it exists); with `export`: the file (COCO) or folder written",
    )
    labels = annotate.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="a fixed list of classes, comma-separated (keys 1-9 pick the first nine)")
    labels.add_argument("--labels-file", type=Path, help="a fixed list of classes, one per line")
    annotate.add_argument("--format", choices=EXPORT_FORMATS, help="with `export`: the format written")
    annotate.add_argument(
        "--tolerance", type=float, default=None,
        help="with `export`, for polygons: how far (pixels) simplification may move the boundary "
        f"(default {DEFAULT_TOLERANCE})",
    )
    add_model_arguments(annotate)
    annotate.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    annotate.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    annotate.add_argument("--cache-size", type=int, default=8, help="image embeddings kept in memory (default 8)")
    annotate.add_argument(
        "--prefill-points-per-side", type=int,
        help=f"pre-fill prompt grid side ({preset_help('points_per_side', 'prefill')})",
    )
    annotate.add_argument(
        "--prefill-iou-thresh", type=float,
        help=f"pre-fill: minimum predicted IoU ({preset_help('pred_iou_thresh', 'prefill')})",
    )
    annotate.add_argument(
        "--prefill-stability-thresh", type=float,
        help=f"pre-fill: minimum stability score ({preset_help('stability_score_thresh', 'prefill')})",
    )
    annotate.add_argument(
        "--no-prefetch", action="store_true", help="do not embed the next image ahead of time"
    )
    annotate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.annotations is not None:
        if str(args.images) != "export":
            raise ValueError(f"expected `promptseg annotate export ANNOTATIONS.json ...`, got a second path after {args.images}")
        return run_export(args)
    if args.format is not None or args.tolerance is not None:
        raise ValueError("--format and --tolerance go with `promptseg annotate export ANNOTATIONS.json`")
    try:
        from promptseg.annotate import AnnotationService, create_app, require_server_packages
        from promptseg.annotate.guard import allowed_hosts_for

        require_server_packages()
    except ModuleNotFoundError as error:
        print(f"promptseg annotate: {error}", file=sys.stderr)
        return 2
    import uvicorn

    if args.cache_size < 1:
        raise ValueError(f"--cache-size must be >= 1, got {args.cache_size}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    loopback = _is_loopback(args.host)
    if not loopback:
        print(NO_AUTH_WARNING.format(host=args.host, port=args.port, out=args.out), file=sys.stderr)
    labels = _labels(args)
    model, description = load_model(args)
    service = AnnotationService(
        args.images, args.out, model, cache_size=args.cache_size, prefetch=not args.no_prefetch,
        prefill_defaults=_prefill_defaults(args), labels=labels,
    )
    allowed_hosts = allowed_hosts_for(args.host) if loopback else None
    app = create_app(service, allowed_hosts=allowed_hosts)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"model: {description}")
    print(f"{len(service.images)} image(s) in {args.images}; annotations go to {args.out}")
    for removed in service.store.removed_temps:
        print(f"removed {removed.name}, left by a save that was killed", file=sys.stderr)
    for unavailable in service.unavailable:
        print(f"unavailable: {unavailable.file_name}: {unavailable.reason}", file=sys.stderr)
    if labels is not None:
        print(f"classes: {', '.join(f'{k + 1}={name}' if k < 9 else name for k, name in enumerate(labels))}")
    print(f"open http://{shown_host}:{args.port}/ in a browser (Ctrl+C stops the server)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        service.close()
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``promptseg annotate export``: the annotations file in another format."""
    from promptseg.annotate.formats import export_annotations, load_dataset

    if args.format is None:
        raise ValueError(f"give --format, one of {', '.join(EXPORT_FORMATS)}")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not 0 <= tolerance <= 20:
        raise ValueError(f"--tolerance must be in 0..20 pixels, got {tolerance}")
    summary = export_annotations(load_dataset(args.annotations), args.format, args.out, tolerance)
    kind = f"polygons, tolerance {tolerance} px; " if args.format in ("coco-polygon", "yolo-seg") else ""
    print(f"{args.format}: {summary['objects']} object(s) of {summary['images']} image(s), "
          f"{len(summary['classes'])} class(es) ({kind}images marked skipped, and new ones without objects, "
          f"are left out) -> {summary['path']}")
    return 0


def _labels(args: argparse.Namespace):
    """The fixed class list of --labels or --labels-file (each label normalised:
    :func:`promptseg.annotate.labels.normalised_label`), or None."""
    from promptseg.annotate.labels import checked_labels

    if args.labels is not None:
        try:
            return checked_labels([name for name in args.labels.split(",")])
        except ValueError as error:
            raise ValueError(f"--labels: {error}") from None
    if args.labels_file is not None:
        try:
            lines = args.labels_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise FileNotFoundError(f"--labels-file {args.labels_file} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"--labels-file {args.labels_file} cannot be read as UTF-8 text ({error})") from None
        try:
            return checked_labels([line for line in lines if line.strip()])
        except ValueError as error:
            raise ValueError(f"--labels-file {args.labels_file}: {error}") from None
    return None


def _prefill_defaults(args: argparse.Namespace) -> dict:
    """Pre-fill settings: the model's prefill preset (the bundled small model predicts lower IoUs
    than SAM, so its thresholds are lower), changed by the --prefill-* arguments given."""
    settings = preset_for(args.model, args.checkpoint, "prefill").replace(
        points_per_side=args.prefill_points_per_side,
        pred_iou_thresh=args.prefill_iou_thresh,
        stability_score_thresh=args.prefill_stability_thresh,
    )
    return prefill_defaults(settings)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
