"""``promptseg info``: versions, device, and the CUDA kernels that were built."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="versions, device, and the CUDA kernels that were built")
    parser.set_defaults(run=run)


def run(_: argparse.Namespace) -> int:
    from promptseg.info import environment_report, format_report

    print(format_report(environment_report()))
    return 0
