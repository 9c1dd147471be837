"""Automatic mask generation, end to end per image (image in, COCO RLE records out): promptseg,
the official segment_anything, and pytorch-labs/segment-anything-fast, same weights, same run.

    python benchmarks/amg.py --sam-fast-path ~/src/segment-anything-fast --checkpoint-dir ~/checkpoints

segment-anything-fast is pytorch-labs' repository (its package is ``segment_anything_fast``),
imported from --sam-fast-path; PyPI's ``segment-anything-fast`` is an unrelated project.
It builds its models as its README does (bfloat16, encoder compiled with max-autotune,
process_batch_size 8). Rows: vit_b and vit_h, 32x32 grid, crop_n_layers 0 and 1.
Writes benchmarks/results/amg_h100.json. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bf16_matmul_tflops, time_ms, write_results  # noqa: E402

IMAGE = Path(__file__).resolve().parents[1] / "tests" / "data" / "images" / "truck.jpg"
CHECKPOINTS = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}
IMPLEMENTATIONS = ("promptseg", "promptseg-bf16", "official", "segment-anything-fast")
# With random weights the default thresholds keep (almost) nothing and the later stages idle,
# so random-weight runs keep every candidate instead. Say which in the results.
KEEP_ALL = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sam-fast-path", type=Path, required=True, help="checkout of pytorch-labs/segment-anything-fast"
    )
    parser.add_argument(
        "--checkpoint-dir", type=Path, help=f"folder holding the official checkpoints {sorted(CHECKPOINTS.values())}"
    )
    parser.add_argument("--models", nargs="+", default=["vit_b", "vit_h"], choices=sorted(CHECKPOINTS))
    parser.add_argument("--crop-n-layers", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--iters", type=int, default=5, help="timed calls per row (median); 2 warm-up calls first")
    parser.add_argument("--results-name", default="amg_h100", help="results file name under benchmarks/results/")
    args = parser.parse_args(argv)
    if not (args.sam_fast_path / "segment_anything_fast").is_dir():
        parser.error(
            "--sam-fast-path must be a checkout of pytorch-labs/segment-anything-fast; "
            f"no segment_anything_fast/ in {args.sam_fast_path}"
        )
    if not torch.cuda.is_available():
        parser.error("this benchmark needs a CUDA GPU and torch.cuda.is_available() is False")
    return args


def _state_dict(model_type: str, checkpoint: Optional[Path]) -> dict[str, torch.Tensor]:
    """The weights every implementation loads: the checkpoint, or one shared random initialisation."""
    import segment_anything

    if checkpoint is not None:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    return segment_anything.sam_model_registry[model_type]().state_dict()


def _generator(impl: str, model_type: str, state: dict[str, torch.Tensor], settings: dict[str, Any]) -> Any:
    if impl.startswith("promptseg"):
        import promptseg

        dtype = torch.bfloat16 if impl == "promptseg-bf16" else torch.float32
        model = promptseg.build_sam(model_type, device="cuda", dtype=torch.float32)
        model.load_state_dict(state)
        return promptseg.SamAutomaticMaskGenerator(model.to(dtype), **settings)
    if impl == "official":
        import segment_anything

        model = segment_anything.sam_model_registry[model_type]()
        model.load_state_dict(state)
        return segment_anything.SamAutomaticMaskGenerator(model.cuda().eval(), **settings)
    import segment_anything_fast

    model = segment_anything_fast.sam_model_registry[model_type]()
    model.load_state_dict(state)
    # As segment_anything_fast.build_sam_fast_*: bf16 modules, compiled image encoder.
    for name in ("image_encoder", "prompt_encoder", "mask_decoder"):
        setattr(model, name, getattr(model, name).eval().to(torch.bfloat16))
    model.image_encoder = torch.compile(model.image_encoder, mode="max-autotune")
    return segment_anything_fast.SamAutomaticMaskGenerator(model.cuda(), process_batch_size=8, **settings)


def _measure(generate: Callable[[], list], iters: int) -> dict[str, Any]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    ms = time_ms(generate, warmup=2, iters=iters)
    return {"ms_per_img": ms, "masks": len(generate()), "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20}


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(args.sam_fast_path.resolve()))
    image = np.array(Image.open(args.image).convert("RGB"))
    rows, weights = [], {}
    for model_type in args.models:
        checkpoint = args.checkpoint_dir / CHECKPOINTS[model_type] if args.checkpoint_dir else None
        if checkpoint is not None and not checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
        weights[model_type] = str(checkpoint) if checkpoint else "random (pred_iou_thresh = stability_score_thresh = 0)"
        if checkpoint is None:
            print(f"WARNING: no checkpoint for {model_type}: random weights, every candidate kept", file=sys.stderr)
        state = _state_dict(model_type, checkpoint)
        for crop_n_layers in args.crop_n_layers:
            settings = {"crop_n_layers": crop_n_layers, "output_mode": "coco_rle", **({} if checkpoint else KEEP_ALL)}
            for impl in args.impls:
                row: dict[str, Any] = {"impl": impl, "model": model_type, "crop_n_layers": crop_n_layers}
                try:
                    generator = _generator(impl, model_type, state, settings)
                    row.update(_measure(lambda: generator.generate(image), args.iters))
                except torch.cuda.OutOfMemoryError as error:
                    failed = {"ms_per_img": None, "masks": None, "peak_mem_mib": None}
                    row.update({**failed, "error": f"out of memory: {error}"})
                rows.append(row)
                print(row, flush=True)
                generator = None
                gc.collect()
                torch.cuda.empty_cache()
    payload = {
        "image": f"{args.image.name} {image.shape[1]}x{image.shape[0]}",
        "grid": "32x32",
        "weights": weights,
        "matmul_tflops": bf16_matmul_tflops(),
        "rows": rows,
    }
    print(f"wrote {write_results(args.results_name, payload)}")


if __name__ == "__main__":
    main()
