"""``promptseg evaluate edges|proposals|instances --gt ... --pred ...``: the zero-shot tasks' standard
evaluations (:mod:`promptseg.evaluate`); prints a table and writes the figures as JSON
(``--out``, default ``<pred>.eval.json``).

- ``edges --gt BOUNDARY_DIR --pred EDGE_DIR``: boundary P/R/F at ODS and OIS, and AP (BSDS-style);
  ground truth as PNGs or BSDS500 .mat files, edge maps as PNGs or .npy, matched by file stem.
- ``proposals --gt instances.json --pred proposals.json``: AR@100, AR@1000 and by size (pycocotools, class-agnostic).
- ``instances --gt instances.json --pred segm.json``: mask AP (pycocotools COCOeval).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from promptseg.io import write_json_atomically


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("evaluate", help="evaluate zero-shot edges, proposals or instances")
    tasks = evaluate.add_subparsers(dest="task", required=True)
    edges = tasks.add_parser("edges", help="boundary P/R/F (ODS, OIS) and AP of edge maps")
    _common(edges, "folder of ground-truth boundaries (PNG or BSDS .mat)", "folder of edge maps (PNG or .npy)")
    edges.add_argument("--max-dist", type=float, default=0.0075, help="match tolerance, fraction of the diagonal")
    edges.add_argument("--thresholds", type=int, default=99, help="thresholds swept in (0, 1) (default 99)")
    edges.set_defaults(run=run_edges)
    proposals = tasks.add_parser("proposals", help="average recall of class-agnostic mask proposals")
    _common(proposals, "COCO instances JSON", "COCO results JSON of the proposals")
    proposals.set_defaults(run=run_proposals)
    instances = tasks.add_parser("instances", help="mask AP of instance segmentation results")
    _common(instances, "COCO instances JSON", "COCO segmentation results JSON")
    instances.set_defaults(run=run_instances)


def _common(parser: argparse.ArgumentParser, gt_help: str, pred_help: str) -> None:
    parser.add_argument("--gt", type=Path, required=True, help=gt_help)
    parser.add_argument("--pred", type=Path, required=True, help=pred_help)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures (default <pred>.eval.json)")


def _report(args: argparse.Namespace, task: str, metrics: dict[str, Any]) -> int:
    width = max(len(name) for name in metrics)
    print(f"{task}: {args.pred} against {args.gt}")
    print(f"{'metric'.ljust(width)}  value")
    for name, value in metrics.items():
        shown = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        print(f"{name.ljust(width)}  {shown}")
    out = args.out or args.pred.with_name(args.pred.name + ".eval.json")
    write_json_atomically(out, {"task": task, "gt": str(args.gt), "pred": str(args.pred), "metrics": metrics})
    print(f"wrote {out}")
    return 0


def run_edges(args: argparse.Namespace) -> int:
    from promptseg.evaluate.boundaries import paired_files, read_boundaries, read_edge_map
    from promptseg.evaluate.edges import evaluate_edges

    pairs = paired_files(args.gt, args.pred)
    preds, gts = [], []
    for gt_path, pred_path in tqdm(pairs, desc="reading", unit="image"):
        for path, read, into in ((pred_path, read_edge_map, preds), (gt_path, read_boundaries, gts)):
            try:
                into.append(read(path))
            except (OSError, ValueError, KeyError) as error:  # Pillow, numpy and scipy name the problem, not the file
                raise ValueError(f"cannot read {path}: {error}") from None
    scores = evaluate_edges(preds, gts, thresholds=args.thresholds, max_dist=args.max_dist)
    return _report(args, "edges", scores.as_dict())


def run_proposals(args: argparse.Namespace) -> int:
    from promptseg.evaluate.proposals import evaluate_proposals

    return _report(args, "proposals", evaluate_proposals(args.gt, args.pred))


def run_instances(args: argparse.Namespace) -> int:
    from promptseg.evaluate.instances import evaluate_instances

    return _report(args, "instances", evaluate_instances(args.gt, args.pred))
