"""Image-embedding and click latency of promptseg against the official segment_anything,
same weights, same run. Works on a CUDA device or (slowly) on the CPU.

    python benchmarks/predictor_latency.py --model vit_b --dtypes float32 bfloat16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bf16_matmul_tflops, time_ms, write_results  # noqa: E402

import promptseg  # noqa: E402
from promptseg.settings import DTYPES  # noqa: E402
IMAGE = Path(__file__).resolve().parents[1] / "tests" / "data" / "images" / "truck.jpg"


def _measure(predictor, image: np.ndarray, iters: int, with_click: bool) -> dict[str, float | None]:
    """Median ms of set_image, and of one multimask click through predict_torch (the tensor
    API, since the official predict() cannot turn bf16 scores into numpy)."""
    embed_ms = time_ms(lambda: predictor.set_image(image), warmup=1, iters=iters)
    if not with_click:
        return {"embed_ms": embed_ms, "click_ms": None}
    coords = predictor.transform.apply_coords_torch(torch.tensor([[[800.0, 560.0]]]), image.shape[:2])
    coords = coords.to(predictor.device)
    labels = torch.ones(1, 1, dtype=torch.int, device=predictor.device)
    click_ms = time_ms(lambda: predictor.predict_torch(coords, labels), warmup=3, iters=5 * iters)
    return {"embed_ms": embed_ms, "click_ms": click_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()

    import segment_anything

    device = "cuda" if torch.cuda.is_available() else "cpu"
    image = np.array(Image.open(IMAGE).convert("RGB"))
    official_fp32 = segment_anything.sam_model_registry[args.model]().eval()
    state = official_fp32.state_dict()
    rows = []
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        official = segment_anything.sam_model_registry[args.model]().eval()
        official.load_state_dict(state)
        ours = promptseg.build_sam(args.model, dtype=dtype, device=device)
        ours.load_state_dict(state)
        for impl, model in (("official", official.to(device=device, dtype=dtype)), ("promptseg", ours)):
            predictor_cls = segment_anything.SamPredictor if impl == "official" else promptseg.SamPredictor
            # The official prompt encoder fails in half precision (fp32 coords @ bf16 matrix).
            with_click = impl == "promptseg" or dtype == torch.float32
            timings = _measure(predictor_cls(model), image, args.iters, with_click)
            rows.append({"impl": impl, "model": args.model, "dtype": dtype_name, **timings})
            print(rows[-1])
            del model
    payload = {"rows": rows}
    if device == "cuda":
        payload["matmul_tflops"] = bf16_matmul_tflops()
    path = write_results(f"predictor_latency_{device}", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
