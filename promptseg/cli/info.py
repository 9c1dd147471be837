"""``promptseg info``: what this installation of promptseg is (versions, device, which CUDA
kernels were built, whether they run by default here, and why, and which CPU engine embeds images
and why)."""

from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np
import torch

from promptseg import __version__
from promptseg.allocator import MALLOC_ENV, keeps_freed_memory
from promptseg.encoders.auto import choose_engine, onnxruntime_installed
from promptseg.encoders.cache import DESCRIPTION_FILE, default_cache_dir
from promptseg.ops import (
    available_kernels,
    build_stamp_status,
    extension_build_stamp,
    extension_loaded,
    kernel_policy,
    kernels_enabled,
)
from promptseg.settings import CPU_ENGINE_ENV
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
        **cpu_engine_report(),
        "kernels": available_kernels(),
    }


def cpu_engine_report() -> dict[str, object]:
    """The CPU engines: threads, ONNX Runtime, the export cache, the override, and the choice for the
    bundled model (a model on the CPU; see promptseg.encoders.auto)."""
    from promptseg.bundled import build_bundled_sam

    if onnxruntime_installed():
        import onnxruntime

        runtime = onnxruntime.__version__
    else:
        runtime = "not installed (pip install onnxruntime onnx): the CPU engine is torch"
    cache = default_cache_dir()
    entries = sorted(path.parent.name for path in cache.glob(f"*/{DESCRIPTION_FILE}"))
    model = build_bundled_sam(device="cpu")  # engine "auto": records the request, exports nothing
    try:
        bundled = str(choose_engine(model))
    except (FileNotFoundError, ValueError) as error:  # a bad PROMPTSEG_CPU_ENGINE, an export not made yet
        bundled = f"none yet: {error}"
    return {
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": runtime,
        "cpu_engine_env": f"{CPU_ENGINE_ENV}={os.environ.get(CPU_ENGINE_ENV) or '(unset: automatic choice)'}",
        "engine_cache": f"{cache} ({len(entries)} model(s){': ' + ', '.join(entries) if entries else ''})",
        "cpu_engine": f"bundled model -> {bundled}",
        "allocator": allocator_report(),
    }


def allocator_report() -> str:
    """Whether this process keeps freed memory for reuse (promptseg.allocator), and how to change it."""
    if keeps_freed_memory():
        return f"keeps freed memory for reuse (glibc; {MALLOC_ENV}=default keeps glibc's policy)"
    return f"glibc's default policy (the promptseg command keeps freed memory unless {MALLOC_ENV}=default)"


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
