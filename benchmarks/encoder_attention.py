"""Encoder attention alone, per layer type (14x14 windows / global) of a 1024x1024 input: the fused
promptseg kernel against SDPA with a materialised rel-pos bias, FlexAttention with a score_mod,
and the official segment_anything einsum path. bf16, from the qkv projection output to the
input of the output projection. Needs a CUDA GPU.

    python benchmarks/encoder_attention.py --models vit_b vit_h --batches 1 8

writes benchmarks/results/encoder_attention_<gpu>.json. TFLOP/s counts the two attention matmuls,
4 * windows * heads * tokens^2 * head_dim (padded window tokens included, rel-pos terms not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder import require_cuda, results_name  # noqa: E402
from harness import bf16_matmul_tflops, time_ms, write_results  # noqa: E402

from promptseg.configs import CONFIGS  # noqa: E402
from promptseg.ops import partition_windows, rel_pos_logits, unpartition_windows, vit_attention_reference  # noqa: E402

GRID = 64  # token grid of a 1024x1024 image with 16x16 patches
WINDOW = 14


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B', h, w, 3C) -> q, k, v each (B', heads, h*w, head_dim)."""
    batch, height, width, channels3 = qkv.shape
    head_dim = channels3 // (3 * heads)
    q, k, v = qkv.reshape(batch, height * width, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


def merge_heads(out: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B', heads, h*w, head_dim) -> (B', h, w, C)."""
    batch, heads, _, head_dim = out.shape
    return out.permute(0, 2, 1, 3).reshape(batch, height, width, heads * head_dim)


def with_windows(qkv: torch.Tensor, window: int, bias: torch.Tensor, attend: Callable) -> torch.Tensor:
    """Partition (window > 0), run ``attend`` on the (B', h, w, 3C) grids, un-partition."""
    if window == 0:
        return attend(qkv)
    windows, padded_hw = partition_windows(qkv, window, bias)
    return unpartition_windows(attend(windows), window, padded_hw, qkv.shape[1:3])


def sdpa_with_bias(qkv, heads, rel_h, rel_w, window, bias) -> torch.Tensor:
    """SDPA with the (B', heads, N, N) rel-pos bias materialised as attn_mask."""

    def attend(grid: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = grid.shape
        q, k, v = split_heads(grid, heads)
        bias_h, bias_w = rel_pos_logits(q, rel_h, rel_w, (height, width))
        tokens = height * width
        mask = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(batch, heads, tokens, tokens)
        return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), height, width)

    return with_windows(qkv, window, bias, attend)


def flex_with_score_mod(flex_attention: Callable) -> Callable:
    """FlexAttention adding rel_h[q, key row] + rel_w[q, key column] in a score_mod."""

    def run(qkv, heads, rel_h, rel_w, window, bias) -> torch.Tensor:
        def attend(grid: torch.Tensor) -> torch.Tensor:
            _, height, width, _ = grid.shape
            q, k, v = split_heads(grid, heads)
            bias_h, bias_w = rel_pos_logits(q, rel_h, rel_w, (height, width))
            bias_h, bias_w = bias_h.flatten(2, 3), bias_w.flatten(2, 3)  # (B', heads, N, h), (B', heads, N, w)

            def score_mod(score, b, h, q_idx, kv_idx):
                return score + bias_h[b, h, q_idx, kv_idx // width] + bias_w[b, h, q_idx, kv_idx % width]

            return merge_heads(flex_attention(q, k, v, score_mod=score_mod), height, width)

        return with_windows(qkv, window, bias, attend)

    return run


def official_einsum(qkv, heads, rel_h, rel_w, window, bias) -> torch.Tensor:
    """The official Attention.forward after its qkv projection: scaled q k^T,
    add_decomposed_rel_pos, softmax, @ v (windows partitioned as the official model pads its
    input with zeros, i.e. padded qkv tokens equal the projection bias)."""
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    def attend(grid: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels3 = grid.shape
        head_dim = channels3 // (3 * heads)
        q, k, v = (
            grid.reshape(batch, height * width, 3, heads, head_dim)
            .permute(2, 0, 3, 1, 4)
            .reshape(3, batch * heads, height * width, head_dim)
        )
        attn = (q * head_dim**-0.5) @ k.transpose(-2, -1)
        attn = add_decomposed_rel_pos(attn, q, rel_h, rel_w, (height, width), (height, width))
        out = (attn.softmax(dim=-1) @ v).view(batch, heads, height, width, head_dim).permute(0, 2, 3, 1, 4)
        return out.reshape(batch, height, width, -1)

    return with_windows(qkv, window, bias, attend)


def attention_flops(batch: int, heads: int, head_dim: int, window: int) -> float:
    """4 * grids * heads * tokens^2 * head_dim for the q k^T and P v products."""
    if window:
        side = -(-GRID // window)
        grids, tokens = batch * side * side, window * window
    else:
        grids, tokens = batch, GRID * GRID
    return 4.0 * grids * heads * tokens**2 * head_dim


def implementations() -> tuple[dict[str, Callable], dict[str, str]]:
    """The runnable implementations by name, and the reasons the others were left out."""
    available: dict[str, Callable] = {}
    skipped: dict[str, str] = {}
    import promptseg.ops  # noqa: F401  (loads promptseg._C when it is built)

    if hasattr(torch.ops.promptseg, "vit_attention"):
        available["promptseg"] = torch.ops.promptseg.vit_attention
    else:
        skipped["promptseg"] = "promptseg._C with vit_attention is not built"
    available["sdpa_bias"] = sdpa_with_bias
    try:
        from torch.nn.attention.flex_attention import flex_attention

        available["flex"] = flex_with_score_mod(torch.compile(flex_attention))
    except ImportError as error:
        skipped["flex"] = f"FlexAttention unavailable: {error}"
    try:
        import segment_anything  # noqa: F401

        available["official"] = official_einsum
    except ImportError as error:
        skipped["official"] = f"segment_anything unavailable: {error}"
    return available, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b", "vit_h"], choices=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--name", default=None, help="results file name (default: encoder_attention_<gpu>)")
    args = parser.parse_args()
    require_cuda("benchmarks/encoder_attention.py")

    available, skipped = implementations()
    for impl, reason in skipped.items():
        print(f"{impl}: skipped ({reason})", file=sys.stderr)
    rows = []
    generator = torch.Generator().manual_seed(0)
    for model in args.models:
        config = CONFIGS[model]
        heads, channels = config.encoder_num_heads, config.encoder_embed_dim
        head_dim = channels // heads
        for layer, window in (("windowed", WINDOW), ("global", 0)):
            side = window or GRID
            for batch in args.batches:

                def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
                    return (scale * torch.randn(*shape, generator=generator)).to("cuda", torch.bfloat16)

                qkv = randn(batch, GRID, GRID, 3 * channels)
                rel_h, rel_w = randn(2 * side - 1, head_dim, scale=0.1), randn(2 * side - 1, head_dim, scale=0.1)
                bias = randn(3 * channels, scale=0.5)
                inputs = (qkv, heads, rel_h, rel_w, window, bias)
                expected = vit_attention_reference(
                    qkv.float(), heads, rel_h.float(), rel_w.float(), window, bias.float()
                )
                flops = attention_flops(batch, heads, head_dim, window)
                for impl, fn in available.items():
                    row = {"impl": impl, "model": model, "layer": layer, "batch": batch, "dtype": "bfloat16"}
                    try:
                        with torch.inference_mode():
                            out = fn(*inputs)
                            milliseconds = time_ms(lambda: fn(*inputs), warmup=5, iters=args.iters)
                    except Exception as error:  # noqa: BLE001  (reported, and the row is left out)
                        reason = str(error).splitlines()[0]
                        print(f"{impl} {model} {layer} batch {batch}: failed ({reason}), no row", file=sys.stderr)
                        torch.cuda.empty_cache()
                        continue
                    relative_error = ((out.float() - expected).norm() / expected.norm()).item()
                    row.update(ms=milliseconds, tflops=flops / (milliseconds * 1e-3) / 1e12, rel_err=relative_error)
                    rows.append(row)
                    print(row, flush=True)
                    del out
                del qkv, expected
                torch.cuda.empty_cache()
    payload = {"matmul_tflops": bf16_matmul_tflops(), "skipped": skipped, "rows": rows}
    path = write_results(args.name or results_name("encoder_attention"), payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
