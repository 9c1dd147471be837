"""``promptseg info``: what this installation of promptseg is (versions, device, which CUDA
kernels were built, and whether they run by default here, and why)."""

from __future__ import annotations

import argparse
import platform
import sys

import numpy as np
import torch

from promptseg import __version__
from promptseg.ops import (
    available_kernels,
    build_stamp_status,
    extension_build_stamp,
    extension_loaded,
    kernel_policy,
    kernels_enabled,
)
from promptseg.text.loading import BUNDLED_CONCEPT_DESCRIPTION, BUNDLED_CONCEPT_WEIGHTS
from promptseg.text.vocabulary import COLOURS, FILLS, SHAPES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="versions, device, and the CUDA kernels that were built")
    parser.set_defaults(run=run)


def run(_: argparse.Namespace) -> int:
    print(format_report(environment_report()))
    return 0


def environment_report() -> dict[str, object]:
    """Versions, devices and the state of the CUDA extension, as plain data."""
    cuda = torch.cuda.is_available()
    return {
        "promptseg": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": np.__version__,
        "cuda_available": cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "extension_built": extension_loaded(),
        "build_stamp": build_stamp_report(),
        "kernels_enabled": kernels_enabled(),
        "kernels_in_force": kernels_in_force(),
        "concept_model": f"{BUNDLED_CONCEPT_DESCRIPTION} (weights/{BUNDLED_CONCEPT_WEIGHTS})",
        "vocabulary": f"colours {', '.join(COLOURS)}; shapes {', '.join(SHAPES)}; fills {', '.join(FILLS)}",
        "kernels": available_kernels(),
    }


def kernels_in_force() -> str:
    """``on`` or ``off`` for the default ``auto`` backend on this machine's GPU, and why
    (:func:`promptseg.ops.kernel_policy`: opt-in until a GPU record verifies them)."""
    policy = kernel_policy()
    return f"{'on' if policy.by_default else 'off'} by default: {policy.reason}"


STAMP_STATUS = {
    "matches": "matches csrc/ and setup.py",
    "stale": "STALE: csrc/ or setup.py changed since this build; rebuild it (setup.py build_ext --inplace)",
    "unstamped": "built without setup.py's stamp header: its sources are unknown",
    "no sources": "no csrc/ here to compare with",
}


def build_stamp_report() -> str:
    """The loaded extension's build stamp (12 hex digits) and how it compares with the sources here."""
    if not extension_loaded():
        return "none: the CUDA extension was not built"
    stamp = extension_build_stamp()
    if stamp is None:
        return "none: built before build stamps (rebuild it)"
    return f"{stamp[:12]} ({STAMP_STATUS[build_stamp_status(stamp)]})"


def format_report(report: dict[str, object]) -> str:
    """Human-readable lines for :func:`environment_report`."""
    lines = [f"{key:16s} {value}" for key, value in report.items() if key != "kernels"]
    kernels = report["kernels"]
    if report["extension_built"]:
        lines.append(f"{'kernels':16s} {', '.join(kernels) if kernels else '(none registered)'}")
    else:
        lines.append(f"{'kernels':16s} none: the CUDA extension was not built; every op runs its PyTorch reference")
    return "\n".join(lines)
