"""SAM 2.1 on the CPU: the official ``sam2`` (PyPI sam2==1.1.0) against ``promptseg.sam2``, side by side
in one run, same random weights, fp32. For each Hiera size, ``set_image`` and ``predict`` (one click,
multimask) are timed in interleaved rounds (official, promptseg, official, ...), so that a machine
that slows down or speeds up during the run affects both alike; the medians are reported.

    python benchmarks/sam2_cpu.py                 # hiera t and b+ at 1024, truck.jpg
    python benchmarks/sam2_cpu.py --quick         # a smoke run: hiera t only, 256 input, 2 rounds, no JSON

Results: benchmarks/results/sam2_cpu_<cpu>.json (not written with --quick unless --out is given).
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import RESULTS_DIR, environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "tests" / "data" / "images" / "truck.jpg"
SIZES = ("t", "b+")
CLICK = (np.array([[500.0, 375.0]]), np.array([1]))


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s model name, else ``platform.processor()``), as a file-name slug."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = name or platform.processor() or "cpu"
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def model_pair(size: str, image_size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(official, promptseg) SAM 2.1 models of Hiera ``size`` with the same random weights, fp32, eval."""
    from sam2.build_sam import build_sam2 as official_build

    from promptseg.sam2.build_sam import build_sam2
    from promptseg.sam2.checkpoint import load_image_state_dict

    config = f"configs/sam2.1/sam2.1_hiera_{size}.yaml"
    overrides = [f"++model.image_size={image_size}"]
    torch.manual_seed(0)
    official = official_build(config, device="cpu", hydra_overrides_extra=overrides).eval()
    ours = build_sam2(config, device="cpu", hydra_overrides_extra=[f"model.image_size={image_size}"]).eval()
    load_image_state_dict(ours, official.state_dict())
    return official, ours


def interleaved_ms(calls: dict[str, Callable[[], object]], rounds: int, warmup: int) -> dict[str, float]:
    """Median milliseconds of each call, timed in ``rounds`` rounds that run every call once, in turn."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append(1e3 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(size: str, image: np.ndarray, image_size: int, rounds: int, clicks: int) -> dict:
    """Median set_image and predict times of both implementations for one Hiera size."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor as OfficialPredictor

    from promptseg.sam2 import SAM2ImagePredictor

    official_model, our_model = model_pair(size, image_size)
    predictors = {"official": OfficialPredictor(official_model), "promptseg": SAM2ImagePredictor(our_model)}
    # the official predictor hard-codes the backbone feature sizes of a 1024 input
    predictors["official"]._bb_feat_sizes = [(image_size // stride,) * 2 for stride in (4, 8, 16)]
    with torch.inference_mode():
        set_image = interleaved_ms(
            {name: (lambda p=p: p.set_image(image)) for name, p in predictors.items()}, rounds, warmup=1
        )
        points, labels = CLICK

        def click(predictor) -> Callable[[], object]:
            def run() -> None:
                for _ in range(clicks):
                    predictor.predict(point_coords=points, point_labels=labels, multimask_output=True)

            return run

        predict = interleaved_ms({name: click(p) for name, p in predictors.items()}, rounds, warmup=1)
    row = {"hiera": size, "image_size": image_size}
    for name in predictors:
        row[f"{name}_set_image_ms"] = round(set_image[name], 2)
        row[f"{name}_predict_ms"] = round(predict[name] / clicks, 3)
    row["set_image_speedup"] = round(set_image["official"] / set_image["promptseg"], 3)
    row["predict_speedup"] = round(predict["official"] / predict["promptseg"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: hiera t, 256 input, 2 rounds, no JSON")
    parser.add_argument("--sizes", nargs="+", default=None, choices=["t", "s", "b+", "l"])
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; --quick 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON path (default results/sam2_cpu_<cpu>.json)")
    args = parser.parse_args()
    try:
        import sam2  # noqa: F401
    except ImportError:
        sys.exit("needs the official sam2: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0 hydra-core iopath")
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.sizes or (["t"] if args.quick else list(SIZES))
    rounds = args.rounds or (2 if args.quick else 7)
    image_size = 256 if args.quick else 1024
    clicks = 2 if args.quick else 10
    image = np.asarray(Image.open(IMAGE).convert("RGB"))
    if args.quick:
        image = image[:300, :400]
    rows = []
    for size in sizes:
        row = measure(size, image, image_size, rounds, clicks)
        print(row, flush=True)
        rows.append(row)
    payload = {
        **environment(),
        "benchmark": "sam2_cpu",
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "image": f"{IMAGE.name} {image.shape[1]}x{image.shape[0]}",
        "rounds": rounds,
        "clicks_per_predict_sample": clicks,
        "weights": "random (the official model's, loaded into promptseg)",
        "note": "medians of interleaved rounds, fp32, torch.inference_mode; predict = one multimask click",
        "rows": rows,
    }
    if args.quick and args.out is None:
        return
    path = args.out or RESULTS_DIR / f"sam2_cpu_{cpu_name()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    import json

    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
