"""Every promptseg CUDA kernel in one process, for one compute-sanitizer run per tool (session.sh).

Runs the encoder driver (sanitize_encoder_driver.py: vit_attention, checked against float64) and then
the decoder driver (sanitize_decoder.py: token attention with one and several splits plus the merge
kernel, mask post-processing with and without stats). Exits with the larger of their exit codes:
0 when both ran clean, 1 on a wrong result, 2 without a GPU or the built extension.
"""

from __future__ import annotations

import sys

import sanitize_decoder  # this folder is sys.path[0] when the file runs as a script
import sanitize_encoder_driver


def main() -> int:
    codes = []
    for name, driver in (("encoder", sanitize_encoder_driver), ("decoder", sanitize_decoder)):
        print(f"== {name} kernels", flush=True)
        codes.append(driver.main())
    print(f"sanitize_kernels: exit codes {codes} (encoder, decoder)", flush=True)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
