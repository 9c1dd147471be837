#!/usr/bin/env bash
# Reproduces the bundled text weights promptseg/weights/vit_tiny_text.safetensors: a text prompt encoder and a
# fine-tuned mask decoder for the bundled vit_tiny, trained on the bundled concept encoder's embeddings
# (see the "Text prompts" section of promptseg/weights/MODEL_CARD.md for the hardware, time and figures).
# Usage: bash scripts/train_text_prompts.sh [OUT_DIR]
set -euo pipefail
out="${1:-runs/vit_tiny_text}"
promptseg train --text --scenes 400 --text-val-scenes 20 --steps 600 --objects-per-step 16 --rounds 0 \
    --text-probability 0.7 --click-probability 0.4 --pair-weight 3 --caption-probability 0.5 \
    --lr 8e-3 --decoder-lr 3e-4 --seed 0 --max-minutes 16 --out "$out"
cp "$out/text_model.safetensors" promptseg/weights/vit_tiny_text.safetensors
