#!/usr/bin/env bash
# Reproduces the bundled model promptseg/weights/vit_tiny_synthetic.safetensors
# (see promptseg/weights/MODEL_CARD.md for the hardware and time it took).
# Usage: bash scripts/train_bundled_model.sh [OUT_DIR [--resume]]
# (the output folder comes first; --resume after it continues a stopped run)
set -euo pipefail
out="${1:-runs/vit_tiny_synthetic}"
shift || true
promptseg train --synthetic 40000 --model vit_tiny --epochs 1 --batch-size 8 --lr 8e-4 \
    --rounds 3 --silent-rounds 1 --objects-per-image 4 --bf16 \
    --checkpoint-every 250 --val-scenes 100 --seed 0 --out "$out" "$@"
cp "$out/model.safetensors" promptseg/weights/vit_tiny_synthetic.safetensors
