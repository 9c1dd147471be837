"""The shared timing harness: CUDA-event timing after warm-up, medians, the bf16 matmul
roofline of the device, and JSON results tagged with device, torch version and commit."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS_DIR = Path(__file__).parent / "results"


def time_ms(fn: Callable[[], object], warmup: int = 5, iters: int = 20) -> float:
    """Median wall time of ``fn()`` in milliseconds.

    On CUDA each call is bracketed by events on the current stream; on the CPU
    perf_counter is used. ``warmup`` untimed calls come first.
    """
    for _ in range(warmup):
        fn()
    samples = []
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
    else:
        for _ in range(iters):
            start_s = time.perf_counter()
            fn()
            samples.append(1e3 * (time.perf_counter() - start_s))
    return statistics.median(samples)


def bf16_matmul_tflops(size: int = 8192) -> float:
    """Achieved dense bf16 matmul rate of the current CUDA device, the roofline for the benchmarks."""
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    milliseconds = time_ms(lambda: a @ b, warmup=5, iters=20)
    return 2 * size**3 / (milliseconds * 1e-3) / 1e12


def environment() -> dict[str, str]:
    """Device name, torch version and the git commit the benchmark ran at (``PROMPTSEG_COMMIT`` when set:
    the GPU machine gets a copy of the working tree without ``.git``, and tests/gpu/session.sh passes it on)."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if os.environ.get("PROMPTSEG_COMMIT"):
        return {"device": device, "torch": torch.__version__, "commit": os.environ["PROMPTSEG_COMMIT"]}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
        commit += "-dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"device": device, "torch": torch.__version__, "commit": commit}


def write_results(name: str, payload: dict) -> Path:
    """Write ``payload`` (merged with :func:`environment`) to ``benchmarks/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({**environment(), **payload}, indent=2) + "\n")
    return path
