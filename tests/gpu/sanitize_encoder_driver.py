"""Small ``torch.ops.promptseg.vit_attention`` calls for compute-sanitizer (run by sanitize_kernels.py).

Covers both dtypes, head dims 64 and 80, windows with padding (with and without a qkv bias),
an odd global grid with interpolated rel-pos tables, a grid narrower than 8 columns and a call
without rel-pos. Each output is checked against the float64 reference on the CPU, so that the only
GPU kernels besides ours are input copies and the table interpolation. Exits 1 on a mismatch.
"""

from __future__ import annotations

import sys

import torch

from promptseg.ops import vit_attention_reference

# (batch, height, width, heads, head_dim, window, rel-pos table rows or None, with qkv bias, dtype)
CASES = [
    (2, 17, 19, 2, 64, 7, (13, 13), True, torch.bfloat16),
    (1, 17, 19, 1, 80, 7, (13, 13), False, torch.float16),
    (1, 9, 10, 2, 80, 0, (33, 33), True, torch.float16),
    (2, 3, 5, 1, 64, 0, (5, 9), True, torch.bfloat16),
    (1, 20, 23, 1, 64, 0, None, False, torch.bfloat16),
]


def main() -> int:
    # Importing promptseg.ops (above) loaded promptseg._C if it was built.
    if not torch.cuda.is_available() or not hasattr(torch.ops.promptseg, "vit_attention"):
        print("needs a CUDA GPU and promptseg._C built with vit_attention", file=sys.stderr)
        return 2
    generator = torch.Generator().manual_seed(0)
    failures = 0
    for batch, height, width, heads, head_dim, window, rows, with_bias, dtype in CASES:
        channels = heads * head_dim
        qkv = torch.randn(batch, height, width, 3 * channels, generator=generator).to(dtype)
        rel_h = rel_w = None
        if rows is not None:
            rel_h = (0.1 * torch.randn(rows[0], head_dim, generator=generator)).to(dtype)
            rel_w = (0.1 * torch.randn(rows[1], head_dim, generator=generator)).to(dtype)
        bias = (0.5 * torch.randn(3 * channels, generator=generator)).to(dtype) if with_bias else None

        def cuda(tensor):
            return None if tensor is None else tensor.cuda()

        def double(tensor):
            return None if tensor is None else tensor.double()

        out = torch.ops.promptseg.vit_attention(cuda(qkv), heads, cuda(rel_h), cuda(rel_w), window, cuda(bias))
        out = out.cpu().double()
        expected = vit_attention_reference(qkv.double(), heads, double(rel_h), double(rel_w), window, double(bias))
        error = ((out - expected).norm() / expected.norm()).item()
        ok = bool(torch.isfinite(out).all()) and error <= 1e-2
        failures += not ok
        case = f"B={batch} {height}x{width} heads={heads} d={head_dim} window={window} rel={rows} bias={with_bias}"
        print(f"{'ok  ' if ok else 'FAIL'} {case} {str(dtype)[6:]}: relative error {error:.2e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
