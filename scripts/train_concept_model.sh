#!/usr/bin/env bash
# Reproduces the bundled concept encoder promptseg/weights/concept_tiny_synthetic.safetensors
# (see promptseg/weights/CONCEPT_MODEL_CARD.md for the hardware and time it took).
# Usage: bash scripts/train_concept_model.sh [OUT_DIR]
# The shipped file made all 4000 steps in 12.1 minutes; the run is also bounded by wall time (--max-minutes,
# data generation included): on a much slower or busier machine it makes fewer steps, and the result differs.
set -euo pipefail
out="${1:-runs/concept_tiny_synthetic}"
promptseg train --concepts --out "$out" --scenes 1300 --steps 4000 --batch-size 96 \
    --lr 2e-3 --val-scenes 100 --seed 0 --threads 1 --max-minutes 28
cp "$out/concept_model.safetensors" promptseg/weights/concept_tiny_synthetic.safetensors
