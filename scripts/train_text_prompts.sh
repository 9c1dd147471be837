#!/usr/bin/env bash
# Reproduces the bundled text weights promptseg/weights/vit_tiny_text.safetensors: a text prompt encoder and a
# lightly fine-tuned mask decoder for the bundled vit_tiny, trained on the bundled concept encoder's embeddings
# (see the "Text prompts" section of promptseg/weights/MODEL_CARD.md for the hardware and time it took).
# Usage: bash scripts/train_text_prompts.sh [OUT_DIR]
set -euo pipefail
out="${1:-runs/vit_tiny_text}"
promptseg train --text --scenes 200 --text-val-scenes 30 --steps 180 --objects-per-step 8 --rounds 0 \
    --caption-probability 0.5 --decoder-lr 1e-4 --lr 1e-3 --seed 0 --out "$out"
cp "$out/text_model.safetensors" promptseg/weights/vit_tiny_text.safetensors
