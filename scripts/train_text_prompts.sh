#!/usr/bin/env bash
# Reproduces the bundled text weights promptseg/weights/vit_tiny_text.safetensors: a text prompt encoder and a
# fine-tuned mask decoder for the bundled vit_tiny, trained on the bundled concept encoder's embeddings
# (see the "Text prompts" section of promptseg/weights/MODEL_CARD.md for the hardware, time and figures).
# Needs the bundled concept encoder of scripts/train_concept_model.sh (the embeddings it trains on).
# Usage: bash scripts/train_text_prompts.sh [OUT_DIR]
set -euo pipefail
out="${1:-runs/vit_tiny_text}"
OMP_NUM_THREADS=1 promptseg train --text --scenes 600 --text-val-scenes 20 --steps 2400 --objects-per-step 16 \
    --rounds 0 --text-probability 0.85 --click-probability 0.35 --pair-weight 3 --caption-probability 0.5 \
    --text-only-multimask --lr 8e-3 --decoder-lr 1e-3 --seed 0 --max-minutes 26 --out "$out"
cp "$out/text_model.safetensors" promptseg/weights/vit_tiny_text.safetensors
