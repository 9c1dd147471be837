"""Small runs of every decoder kernel path, for compute-sanitizer (run by sanitize_kernels.py).

Covers the attention kernel with one split and with several (plus the merge kernel), with and
without a key padding mask, gathered query and key/value rows, head_dim 8 to 64, and the mask
post-processing kernel with and without stats, in bf16, fp16 and fp32.
"""

from __future__ import annotations

import sys

import torch

import promptseg.ops  # noqa: F401  (loads promptseg._C and registers the ops)


def main() -> int:
    if not torch.cuda.is_available() or not hasattr(torch.ops.promptseg, "token_attention"):
        print("sanitize_decoder: needs a CUDA device and the built extension promptseg._C", file=sys.stderr)
        return 2
    ops = torch.ops.promptseg
    generator = torch.Generator(device="cuda").manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16):
        for heads, channels in ((4, 32), (8, 128), (8, 256), (2, 128)):  # head_dim 8, 16, 32, 64
            tokens = torch.randn(3, 7, channels, generator=generator, device="cuda").to(dtype)
            image = torch.randn(2, 1000, channels, generator=generator, device="cuda").to(dtype)
            index = torch.tensor([1, 0, 1], device="cuda")
            mask = torch.arange(7, device="cuda")[None, :] < torch.tensor([[7], [3], [5]], device="cuda")
            ops.token_attention(tokens, tokens, tokens, heads, mask)  # one split
            ops.gathered_token_attention(tokens, image, image, heads, None, None, index)  # several splits
            ops.gathered_token_attention(image, tokens, tokens, heads, mask, index, None)  # many queries
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        low_res = torch.randn(2, 3, 64, 64, generator=generator, device="cuda").to(dtype)
        for return_logits, with_stats in ((False, True), (True, False)):
            ops.mask_postprocess(low_res, [256, 171], [301, 200], 256, 0.0, return_logits, with_stats)
    torch.cuda.synchronize()
    print("sanitize_decoder: all kernels ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
