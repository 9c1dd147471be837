"""Prompt-side latency and throughput: promptseg's fused decoder path against the official
segment_anything (eager fp32, and bf16 where it runs) and segment-anything-fast, same weights.

Cases (one image embedding; multimask output):
  click_lowres   one point -> low-res logits on the device (prompt encoder + mask decoder)
  click_fullres  ... + masks at truck.jpg's 1800x1200 on the device
  click_predict  predictor.predict(one point), numpy out, as a user times it
  points, boxes  P one-point (or box) prompts -> low-res logits, in chunks of --chunk prompts

    python benchmarks/decoder.py --model vit_b [--sam-fast-path /path/to/segment-anything-fast]

Needs a CUDA device; writes benchmarks/results/decoder_h100.json (--name to change).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import time_ms, write_results  # noqa: E402

import promptseg  # noqa: E402
from promptseg.decoders import FusedDecoder, fused_path_available  # noqa: E402
from promptseg.prompts.validate import check_prompt  # noqa: E402
from promptseg.prompts.batch import pack_prompts  # noqa: E402

IMAGE = Path(__file__).resolve().parents[1] / "tests" / "data" / "images" / "truck.jpg"
PROMPT_COUNTS = (64, 1024, 4096)
CLICK = np.array([[800.0, 560.0]])


def _prompts(kind: str, count: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 2) points or (count, 4) XYXY boxes in pixels of the original image."""
    rng = np.random.default_rng(count)
    corners = rng.uniform([0, 0], [width, height], size=(count, 2))
    if kind == "points":
        return corners, np.ones((count, 1), dtype=np.int64)
    sizes = rng.uniform(20, 400, size=(count, 2))
    boxes = np.concatenate([corners, np.minimum(corners + sizes, [width - 1, height - 1])], axis=1)
    return boxes, np.zeros((count, 0), dtype=np.int64)


def _row(impl: str, model: str, case: str, prompts: int, dtype: str, ms: float) -> dict:
    row = {"impl": impl, "model": model, "case": case, "prompts": prompts, "dtype": dtype, "ms": ms,
           "prompts_per_s": prompts / (ms * 1e-3)}
    print(row, flush=True)
    return row


def _official_cases(predictor, impl: str, args, image: np.ndarray, dtype_name: str) -> list[dict]:
    """Rows of an official-style predictor (segment_anything or segment-anything-fast)."""
    rows = []
    sam = predictor.model
    height, width = image.shape[:2]
    predictor.set_image(image)
    device, dtype = predictor.device, sam.mask_decoder.iou_token.weight.dtype

    def decode(coords: Optional[torch.Tensor], labels: Optional[torch.Tensor], boxes: Optional[torch.Tensor]):
        points = (coords, labels) if coords is not None else None
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
        return sam.mask_decoder(
            image_embeddings=predictor.features, image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse.to(dtype), dense_prompt_embeddings=dense.to(dtype), multimask_output=True,
        )

    coords = torch.as_tensor(predictor.transform.apply_coords(CLICK, (height, width)), dtype=torch.float, device=device)[None]
    labels = torch.ones(1, 1, dtype=torch.int, device=device)
    with torch.no_grad():
        rows.append(_row(impl, args.model, "click_lowres", 1, dtype_name, time_ms(lambda: decode(coords, labels, None), 10, args.iters)))
        fullres = lambda: sam.postprocess_masks(decode(coords, labels, None)[0], predictor.input_size, predictor.original_size) > 0  # noqa: E731
        rows.append(_row(impl, args.model, "click_fullres", 1, dtype_name, time_ms(fullres, 10, args.iters)))
        click = lambda: predictor.predict(point_coords=CLICK, point_labels=np.array([1]))  # noqa: E731
        rows.append(_row(impl, args.model, "click_predict", 1, dtype_name, time_ms(click, 10, args.iters)))
        for kind in ("points", "boxes"):
            for count in PROMPT_COUNTS:
                values, _ = _prompts(kind, count, height, width)
                if kind == "points":
                    tensor = torch.as_tensor(predictor.transform.apply_coords(values, (height, width)), dtype=torch.float, device=device)
                    chunks = [(c[:, None], torch.ones(len(c), 1, dtype=torch.int, device=device), None) for c in tensor.split(args.chunk)]
                else:
                    tensor = torch.as_tensor(predictor.transform.apply_boxes(values, (height, width)), dtype=torch.float, device=device)
                    chunks = [(None, None, c) for c in tensor.split(args.chunk)]
                run = lambda: [decode(*chunk) for chunk in chunks]  # noqa: E731
                rows.append(_row(impl, args.model, kind, count, dtype_name, time_ms(run, 2, max(3, args.iters // 4))))
    return rows


def _promptseg_cases(predictor: promptseg.SamPredictor, args, image: np.ndarray) -> list[dict]:
    """Rows of promptseg's fused path (bf16)."""
    rows = []
    model = predictor.model
    height, width = image.shape[:2]
    predictor.set_image(image)
    if not fused_path_available(model, predictor.features):
        raise RuntimeError("the fused path is not available (build the extension: setup.py build_ext)")
    fused = FusedDecoder(model)

    def decode(batch) -> tuple[torch.Tensor, torch.Tensor]:
        return fused.decode(predictor.features, batch, [0] * len(batch.labels), True)

    click = pack_prompts([check_prompt(CLICK, np.array([1]))], [(height, width)], predictor.transform, predictor.device)
    with torch.no_grad():
        rows.append(_row("promptseg", args.model, "click_lowres", 1, "bfloat16", time_ms(lambda: decode(click), 10, args.iters)))

        def fullres() -> torch.Tensor:
            low_res = decode(click)[0]
            return promptseg.ops.mask_postprocess(low_res, predictor.input_size, predictor.original_size, 1024).masks

        rows.append(_row("promptseg", args.model, "click_fullres", 1, "bfloat16", time_ms(fullres, 10, args.iters)))
        click_predict = lambda: predictor.predict(point_coords=CLICK, point_labels=np.array([1]))  # noqa: E731
        rows.append(_row("promptseg", args.model, "click_predict", 1, "bfloat16", time_ms(click_predict, 10, args.iters)))
        for kind in ("points", "boxes"):
            for count in PROMPT_COUNTS:
                values, _ = _prompts(kind, count, height, width)
                prompts = [
                    check_prompt(point_coords=v[None], point_labels=np.array([1])) if kind == "points" else check_prompt(box=v)
                    for v in values
                ]
                batches = [
                    pack_prompts(prompts[start : start + args.chunk], [(height, width)] * len(prompts[start : start + args.chunk]),
                                 predictor.transform, predictor.device)
                    for start in range(0, count, args.chunk)
                ]
                run = lambda: [decode(batch) for batch in batches]  # noqa: E731
                rows.append(_row("promptseg", args.model, kind, count, "bfloat16", time_ms(run, 2, max(3, args.iters // 4))))
    return rows


def _try(label: str, make_rows: Callable[[], list[dict]]) -> list[dict]:
    """Rows of ``make_rows``, or none (with the reason printed) when that implementation does not run."""
    try:
        return make_rows()
    except Exception as error:  # a competitor that fails to run is reported, not fatal
        print(f"skipped {label}: {type(error).__name__}: {error}", flush=True)
        torch.cuda.empty_cache()
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=256, help="prompts per decoder call in the throughput cases")
    parser.add_argument("--sam-fast-path", type=Path, help="checkout of pytorch-labs/segment-anything-fast")
    parser.add_argument("--name", default="decoder_h100", help="results file name (benchmarks/results/<name>.json)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/decoder.py needs a CUDA device; none is visible (torch.cuda.is_available() is False)")

    import segment_anything

    image = np.array(Image.open(IMAGE).convert("RGB"))
    official = segment_anything.sam_model_registry[args.model]().eval()
    state = official.state_dict()
    rows = []
    ours = promptseg.build_sam(args.model, dtype=torch.bfloat16, device="cuda")
    ours.load_state_dict(state)
    rows += _promptseg_cases(promptseg.SamPredictor(ours, prompt_batch_size=args.chunk), args, image)
    del ours
    rows += _try("official fp32", lambda: _official_cases(
        segment_anything.SamPredictor(official.to("cuda")), "official", args, image, "float32"))
    rows += _try("official bf16", lambda: _official_cases(
        segment_anything.SamPredictor(official.to(dtype=torch.bfloat16)), "official", args, image, "bfloat16"))
    official = None  # free the GPU memory before the next implementation
    if args.sam_fast_path is not None:
        sys.path.insert(0, str(args.sam_fast_path))

        def sam_fast_rows() -> list[dict]:
            import segment_anything_fast

            fast = segment_anything_fast.sam_model_registry[args.model]().eval()
            fast.load_state_dict(state)
            fast = fast.to(device="cuda", dtype=torch.bfloat16)
            return _official_cases(segment_anything_fast.SamPredictor(fast), "segment-anything-fast", args, image, "bfloat16")

        rows += _try("segment-anything-fast", sam_fast_rows)
    path = write_results(args.name, {"rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
