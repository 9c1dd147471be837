"""SAM 2.1 on the GPU: the official ``sam2`` (PyPI sam2==1.1.0) against ``promptseg.sam2``, side by side
in one run, same random weights (the official model's, loaded strictly into promptseg's, as
benchmarks/sam2_cpu.py does). Per Hiera size and per precision (fp32; bf16 under
``torch.autocast``, as the official README runs SAM 2), each implementation is timed on:

- ``set_image`` of truck.jpg;
- ``predict``: one multimask click at the image centre;
- ``SAM2AutomaticMaskGenerator.generate``: image in, records out, with the official defaults (32x32
  grid, ``points_per_batch`` 64, ``output_mode`` "binary_mask", no crops) except the two quality
  thresholds, which are 0 (with random weights the defaults keep almost nothing; the payload says so).

Timing is benchmarks/harness.py's: CUDA events after warm-up, medians. For each precision the records
of the two generators are compared: count, and the IoU of each pair in order (they "match" when the
counts agree and every IoU is >= 0.99, issue 26's AMG parity rule). The GPU anchor (issue 26): PyTorch's
SAM 2 speed-up took SAM 2.1-L AMG on an H100 from 863 ms to 120 ms (real weights, its own settings);
promptseg's target is <= 60 ms.

    python benchmarks/sam2_gpu.py                                  # hiera l, fp32 + bf16 -> sam2_<gpu>.json
    python benchmarks/sam2_gpu.py --models t l --iters 10
    python benchmarks/sam2_gpu.py --device cpu --models t --iters 1 --image-size small --points-per-side 8 \\
        --name sam2_dryrun                                         # the CPU dry run (do not commit its file)

Needs the official sam2 (tests/gpu/prepare.sh carries its wheels to the GPU machine).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bf16_matmul_tflops, time_ms, write_results  # noqa: E402
from sam2_cpu import IMAGE, model_pair  # noqa: E402

IMPLEMENTATIONS = ("official", "promptseg")
# Random weights: the default quality thresholds (0.8, 0.95) keep (almost) nothing, so every candidate is kept.
KEEP_ALL = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
MATCH_IOU = 0.99
IMAGE_SIZES = {"full": 1024, "small": 256}   # the model's input side; "small" also crops the photo to 400x300
ANCHOR = {"hiera": "l", "amg_ms_h100_pytorch_fast": 120.0, "amg_ms_h100_official": 863.0, "target_ms": 60.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["l"], choices=["t", "s", "b+", "l"], help="Hiera sizes")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    parser.add_argument("--iters", type=int, default=10, help="timed calls of set_image and predict (median)")
    parser.add_argument("--amg-iters", type=int, default=None, help="timed generate calls (default min(iters, 3))")
    parser.add_argument("--image-size", choices=sorted(IMAGE_SIZES), default="full",
                        help="full: 1024 input, the whole photo; small: 256 input, a 400x300 crop (dry runs)")
    parser.add_argument("--points-per-side", type=int, default=32, help="the AMG grid (official default 32)")
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--name", default=None, help="results file name under benchmarks/results/ (default sam2_<gpu>)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU and torch.cuda.is_available() is False (use --device cpu)")
    if args.iters < 1 or (args.amg_iters is not None and args.amg_iters < 1):
        parser.error(f"--iters and --amg-iters must be >= 1, got {args.iters} and {args.amg_iters}")
    return args


def precision(device: str, dtype: str) -> contextlib.AbstractContextManager:
    """The context both implementations run in: nothing for fp32, bf16 autocast on ``device``'s type."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def peak_memory(device: str, row: dict[str, Any]) -> Iterator[None]:
    """Record the peak CUDA memory (MiB) of the block in ``row["peak_mem_mib"]`` (CUDA only)."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    yield
    if cuda:
        torch.cuda.synchronize()
        row["peak_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)


def predictors(official_model: torch.nn.Module, our_model: torch.nn.Module, image_size: int) -> dict[str, Any]:
    """The two image predictors, the official one told the backbone feature sizes of ``image_size``."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor as OfficialPredictor

    from promptseg.sam2 import SAM2ImagePredictor

    official = OfficialPredictor(official_model)
    # the official predictor hard-codes the feature sizes of a 1024 input
    official._bb_feat_sizes = [(image_size // stride,) * 2 for stride in (4, 8, 16)]
    return {"official": official, "promptseg": SAM2ImagePredictor(our_model)}


def generators(official_model: torch.nn.Module, our_model: torch.nn.Module, image_size: int,
               points_per_side: int) -> dict[str, Any]:
    """The two automatic mask generators with the official defaults except :data:`KEEP_ALL`."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as OfficialGenerator

    from promptseg.sam2 import SAM2AutomaticMaskGenerator

    settings = {"points_per_side": points_per_side, **KEEP_ALL}
    official = OfficialGenerator(official_model, **settings)
    official.predictor._bb_feat_sizes = [(image_size // stride,) * 2 for stride in (4, 8, 16)]
    return {"official": official, "promptseg": SAM2AutomaticMaskGenerator(our_model, **settings)}


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare_records(official: list[dict], ours: list[dict]) -> dict[str, Any]:
    """Counts of both record lists, the smallest IoU of the pairs in order, and whether they match."""
    ious = [mask_iou(np.asarray(a["segmentation"]), np.asarray(b["segmentation"])) for a, b in zip(official, ours)]
    min_iou = min(ious) if ious else None
    same_count = len(official) == len(ours)
    return {
        "official_records": len(official),
        "promptseg_records": len(ours),
        "min_pair_iou": None if min_iou is None else round(min_iou, 5),
        "pairs_below_match_iou": sum(iou < MATCH_IOU for iou in ious),
        "records_match": same_count and all(iou >= MATCH_IOU for iou in ious),
    }


def timed(device: str, fn: Callable[[], object], warmup: int, iters: int) -> dict[str, Any]:
    """``{"ms": median, "peak_mem_mib": ...}`` of ``fn`` (harness.time_ms), or ``{"error": ...}``."""
    row: dict[str, Any] = {}
    try:
        with peak_memory(device, row):
            row["ms"] = round(time_ms(fn, warmup=warmup, iters=iters), 3)
    except Exception as error:  # noqa: BLE001 -- one failing row must not lose the others of a one-shot GPU call
        traceback.print_exc()
        row = {"ms": None, "error": f"{type(error).__name__}: {error}"}
    return row


def measure(size: str, image: np.ndarray, args: argparse.Namespace) -> Iterator[tuple[str, list, dict, dict]]:
    """For one Hiera size (both models built once), per precision in ``args.dtypes``: the dtype, the rows
    (set_image, predict, amg of both implementations), the click's masks (3, H, W) per implementation
    and the generator's records per implementation (each only where its calls ran).

    Both run under ``torch.no_grad()`` (what each predictor applies itself), not ``inference_mode``:
    under ``inference_mode`` promptseg's fused decoder cannot check its image-table cache (inference
    tensors have no version counter) and builds the table for each call."""
    image_size = IMAGE_SIZES[args.image_size]
    official_model, our_model = (model.to(args.device) for model in model_pair(size, image_size))
    click = (np.array([[image.shape[1] / 2, image.shape[0] / 2]]), np.array([1]))
    amg_iters = args.amg_iters or min(args.iters, 3)
    warmup = 1 if args.iters < 3 else 3
    for dtype in args.dtypes:
        rows, records, clicks = [], {}, {}
        base = {"hiera": size, "dtype": dtype, "image_size": image_size}
        with torch.no_grad(), precision(args.device, dtype):
            for impl, predictor in predictors(official_model, our_model, image_size).items():
                rows.append({**base, "impl": impl, "op": "set_image",
                             **timed(args.device, lambda p=predictor: p.set_image(image), warmup, args.iters)})
                if rows[-1]["ms"] is None:
                    continue

                def predict(p: Any = predictor) -> Any:
                    return p.predict(point_coords=click[0], point_labels=click[1], multimask_output=True)

                rows.append({**base, "impl": impl, "op": "predict", **timed(args.device, predict, warmup, args.iters)})
                if rows[-1]["ms"] is None:
                    continue
                clicks[impl] = predict()[0]
            for impl, generator in generators(official_model, our_model, image_size, args.points_per_side).items():
                rows.append({**base, "impl": impl, "op": "amg", "points_per_side": args.points_per_side,
                             **timed(args.device, lambda g=generator: g.generate(image), 1, amg_iters)})
                if rows[-1]["ms"] is None:
                    continue
                records[impl] = generator.generate(image)
                rows[-1]["records"] = len(records[impl])
            synchronize(args.device)
        yield dtype, rows, clicks, records


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import sam2  # noqa: F401
    except ImportError:
        sys.exit("needs the official sam2: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0 hydra-core iopath")
    image = np.asarray(Image.open(args.image).convert("RGB"))
    if args.image_size == "small":
        image = image[:300, :400]
    cuda = torch.device(args.device).type == "cuda"
    if args.name:
        name = args.name
    elif cuda:
        from encoder import results_name

        name = results_name("sam2")
    else:
        name = "sam2_cpu_dryrun"
    rows: list[dict] = []
    comparisons: list[dict] = []
    payload = {
        "benchmark": "sam2_gpu",
        "image": f"{args.image.name} {image.shape[1]}x{image.shape[0]}",
        "weights": "random (the official model's, loaded strictly into promptseg's)",
        "amg_settings": {"points_per_side": args.points_per_side, "points_per_batch": 64, "crop_n_layers": 0,
                         "output_mode": "binary_mask (the official default)", **KEEP_ALL,
                         "note": "official defaults except the quality thresholds: random weights keep nothing at 0.8/0.95"},
        "precision": "fp32: no autocast; bf16: torch.autocast(bfloat16) around both, fp32 weights (the official README's way); "
                     "torch.no_grad (under inference_mode promptseg's fused decoder builds its image table per call)",
        "timing": f"medians: set_image and predict {args.iters} calls after {1 if args.iters < 3 else 3} warm-up, "
                  f"amg {args.amg_iters or min(args.iters, 3)} after 1; CUDA events on a GPU (benchmarks/harness.py); "
                  "predict = one multimask click at the image centre",
        "match_rule": f"records_match: same count and each pair (in order) IoU >= {MATCH_IOU}",
        "anchor": ANCHOR,
        "matmul_tflops": round(bf16_matmul_tflops(), 1) if cuda else None,
        "rows": rows,
        "comparisons": comparisons,
        "complete": False,
    }
    for size in args.models:
        for dtype, new_rows, clicks, records in measure(size, image, args):
            for row in new_rows:
                print(row, flush=True)
            rows += new_rows
            comparison = {"hiera": size, "dtype": dtype}
            if len(clicks) == 2:
                comparison["click_mask_ious"] = [round(mask_iou(a, b), 5) for a, b in zip(*clicks.values())]
            if len(records) == 2:
                comparison.update(compare_records(records["official"], records["promptseg"]))
            print(comparison, flush=True)
            comparisons.append(comparison)
            write_results(name, payload)   # after each precision, so that a run stopped at its cap keeps its rows
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
    payload["complete"] = True
    print(f"wrote {write_results(name, payload)}")


if __name__ == "__main__":
    main()
