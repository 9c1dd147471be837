"""Whole image encoder: images/s and peak memory of promptseg in bf16 (fused attention kernel)
against the official segment_anything in fp32 and bf16 and segment-anything-fast (its default
build: bf16, torch.compile max-autotune). Random weights, 1024x1024 inputs. Needs a CUDA GPU.

    python benchmarks/encoder.py --sam-fast-path ../segment-anything-fast

writes benchmarks/results/encoder_<gpu>.json (e.g. encoder_h100.json) with rows
{impl, model, batch, dtype, img_per_s, ms_per_img, peak_mem_mib}.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bf16_matmul_tflops, time_ms, write_results  # noqa: E402

from promptseg.settings import dtype_name  # noqa: E402


def require_cuda(script: str) -> None:
    """Exit with a clear message when no CUDA device is visible."""
    if not torch.cuda.is_available():
        raise SystemExit(f"{script} needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")


def results_name(prefix: str) -> str:
    """``<prefix>_<gpu>``, the GPU as its model number (``h100``) or else its sanitised name."""
    name = torch.cuda.get_device_name(0)
    match = re.search(r"\b([A-Z]\d{2,3}[A-Z]?)\b", name)
    tag = match.group(1) if match else re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_")
    return f"{prefix}_{tag.lower()}"


def measure(encoder: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, iters: int) -> dict[str, float]:
    """Median time of ``encoder(images)`` (after warm-up, which also compiles) and its peak memory."""
    with torch.inference_mode():
        milliseconds = time_ms(lambda: encoder(images), warmup=3, iters=iters)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        encoder(images)
        torch.cuda.synchronize()
    batch = images.shape[0]
    return {
        "img_per_s": batch / (milliseconds * 1e-3),
        "ms_per_img": milliseconds / batch,
        "peak_mem_mib": torch.cuda.max_memory_allocated() / 2**20,
    }


def encoders(model: str, state: dict, sam_fast_path: Path | None):
    """(impl, dtype, zero-argument builder of a (B, 3, 1024, 1024) -> embedding callable) for each
    implementation; builders construct on demand so that one model at a time holds GPU memory."""
    import segment_anything

    import promptseg
    from promptseg.ops import kernel_available

    def official(dtype: torch.dtype):
        def build():
            sam = segment_anything.sam_model_registry[model]()
            sam.load_state_dict(state)
            return sam.image_encoder.to(device="cuda", dtype=dtype).eval()

        return build

    def ours():
        sam = promptseg.build_sam(model, dtype=torch.bfloat16, device="cuda")
        sam.load_state_dict(state)
        return sam.image_encoder.eval()

    probe = torch.empty(1, 1, 1, 3 * 64, device="cuda", dtype=torch.bfloat16)
    ours_impl = "promptseg" if kernel_available("vit_attention", probe) else "promptseg-reference"
    yield ours_impl, torch.bfloat16, ours
    yield "official", torch.float32, official(torch.float32)
    yield "official", torch.bfloat16, official(torch.bfloat16)
    if sam_fast_path is not None:

        def sam_fast():
            # Its default fast build (bf16 weights, encoder under torch.compile max-autotune), with its
            # own random weights: the weights do not change the work.
            sys.path.insert(0, str(sam_fast_path))
            from segment_anything_fast import sam_model_fast_registry

            return sam_model_fast_registry[model]().image_encoder.to("cuda")

        yield "segment-anything-fast", torch.bfloat16, sam_fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b", "vit_l", "vit_h"], choices=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument(
        "--sam-fast-path", type=Path, default=None, help="a pytorch-labs/segment-anything-fast checkout"
    )
    parser.add_argument("--name", default=None, help="results file name (default: encoder_<gpu>)")
    args = parser.parse_args()
    require_cuda("benchmarks/encoder.py")
    if args.sam_fast_path is not None and not (args.sam_fast_path / "segment_anything_fast").is_dir():
        raise SystemExit(f"--sam-fast-path {args.sam_fast_path} holds no segment_anything_fast package")
    if args.sam_fast_path is None:
        print("segment-anything-fast: skipped (no --sam-fast-path given)", file=sys.stderr)

    import segment_anything

    rows = []
    for model in args.models:
        state = segment_anything.sam_model_registry[model]().state_dict()
        for impl, dtype, build in encoders(model, state, args.sam_fast_path):
            encoder = build()
            for batch in args.batches:
                images = torch.randn(batch, 3, 1024, 1024, device="cuda", dtype=dtype)
                try:
                    timings = measure(encoder, images, args.iters)
                except torch.cuda.OutOfMemoryError:
                    print(f"{impl} {model} {dtype_name(dtype)} batch {batch}: out of memory, no row", file=sys.stderr)
                    continue
                finally:
                    del images
                rows.append({"impl": impl, "model": model, "batch": batch, "dtype": dtype_name(dtype), **timings})
                print(rows[-1], flush=True)
            del encoder
            torch.cuda.empty_cache()
    path = write_results(args.name or results_name("encoder"), {"matmul_tflops": bf16_matmul_tflops(), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
