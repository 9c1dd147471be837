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
    """Device name, torch version and the git commit the benchmark ran at: the checkout's (``-dirty`` when a
    tracked file other than a results file differs), else ``PROMPTSEG_COMMIT`` (the GPU machine gets a copy
    of the working tree without ``.git``; tests/gpu/session.sh passes it on), else 'unknown'. The same rule
    as tests/gpu/summarize.py."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=here).stdout.strip()
        # Results written by an earlier benchmark run are not a change to the code being measured.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)benchmarks/results"],
            capture_output=True, text=True, cwd=here,
        ).stdout.strip()
        commit += "-dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = os.environ.get("PROMPTSEG_COMMIT") or "unknown"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"device": device, "torch": torch.__version__, "commit": commit}


def write_results(name: str, payload: dict) -> Path:
    """Write ``payload`` (merged with :func:`environment`) to ``benchmarks/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({**environment(), **payload}, indent=2) + "\n")
    return path
