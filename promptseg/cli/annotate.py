"""``promptseg annotate``: a local, browser-based assisted annotation tool (SAM's data engine, stages 1 and 2).

It serves a single page and a JSON API (docs/annotate.md) for the images directly inside IMAGE_DIR,
and writes every accepted object to --out (COCO, atomically). Re-running on the same --out resumes.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from promptseg.annotate.prompts import prefill_defaults
from promptseg.cli.common import add_model_arguments, load_model, preset_help
from promptseg.settings import preset_for

NO_AUTH_WARNING = (
    "warning: serving on {host}, not on 127.0.0.1: the annotation server has NO authentication; "
    "anyone who can reach {host}:{port} can read the images and change {out}"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    annotate = subparsers.add_parser(
        "annotate", help="annotate a folder of images in the browser: clicks to masks, pre-fill, COCO output"
    )
    annotate.add_argument("images", type=Path, metavar="IMAGE_DIR", help="folder of images to annotate")
    annotate.add_argument("--out", type=Path, required=True, help="COCO annotations file (resumed if it exists)")
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
    try:
        from promptseg.annotate import AnnotationService, create_app, require_server_packages

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
    model, description = load_model(args)
    service = AnnotationService(
        args.images, args.out, model, cache_size=args.cache_size, prefetch=not args.no_prefetch,
        prefill_defaults=_prefill_defaults(args),
    )
    allowed_hosts = ["127.0.0.1", "localhost", "::1", "[::1]"] if loopback else None
    app = create_app(service, allowed_hosts=allowed_hosts)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"model: {description}")
    print(f"{len(service.images)} image(s) in {args.images}; annotations go to {args.out}")
    print(f"open http://{shown_host}:{args.port}/ in a browser (Ctrl+C stops the server)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        service.close()
    return 0


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
