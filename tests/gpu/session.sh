#!/usr/bin/env bash
# Everything that needs a GPU, in phases that each fit one device call (10 minutes).
# Run on the GPU machine from the repository root; see tests/gpu/README.md for the one-time
# preparation (wheels in .whl/, a segment-anything-fast checkout in benchmarks/vendor/).
#
#   bash tests/gpu/session.sh build       # build promptseg._C in place for this GPU's torch
#   bash tests/gpu/session.sh tests       # pytest -m gpu (kernels vs references, opcheck, predictor parity)
#   bash tests/gpu/session.sh sanitize    # compute-sanitizer memcheck/racecheck/synccheck/initcheck
#   bash tests/gpu/session.sh bench-encoder | bench-decoder | bench-amg
#
# Every phase builds first if the extension is missing, so any phase can start a fresh machine.
# Logs go to $OUT (the device tool's return folder) or gpu_out/; results JSON to benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/../.."
phase="${1:?usage: session.sh build|tests|sanitize|bench-encoder|bench-decoder|bench-amg}"
logs="${OUT:-gpu_out}"
mkdir -p "$logs"
export PYTHONUNBUFFERED=1

if [[ -d .whl && ! -d /tmp/site ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[[ -d /tmp/site ]] && export PYTHONPATH="$PYTHONPATH:/tmp/site"

if ! compgen -G "promptseg/_C*.so" >/dev/null; then
  arch="$(python3 -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
  echo "building promptseg._C for sm_${arch/./} (log: $logs/build.log)"
  PROMPTSEG_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" python3 setup.py build_ext --inplace >"$logs/build.log" 2>&1
fi
python3 -m promptseg info | tee "$logs/info.txt"

sam_fast=benchmarks/vendor/segment-anything-fast
sam_fast_args=()
[[ -d "$sam_fast/segment_anything_fast" ]] && sam_fast_args=(--sam-fast-path "$sam_fast")

case "$phase" in
  build) ;;
  tests) python3 -m pytest -m gpu -rs -q 2>&1 | tee "$logs/gpu_tests.log" ;;
  sanitize)
    PYTHON=python3 bash tests/gpu/sanitize_encoder.sh 2>&1 | tee "$logs/sanitize_encoder.log"
    bash tests/gpu/sanitize_decoder.sh python3 2>&1 | tee "$logs/sanitize_decoder.log"
    ;;
  bench-encoder)
    python3 benchmarks/encoder_attention.py 2>&1 | tee "$logs/bench_encoder_attention.log"
    python3 benchmarks/encoder.py "${sam_fast_args[@]}" 2>&1 | tee "$logs/bench_encoder.log"
    ;;
  bench-decoder) python3 benchmarks/decoder.py "${sam_fast_args[@]}" 2>&1 | tee "$logs/bench_decoder.log" ;;
  bench-amg) python3 benchmarks/amg.py "${sam_fast_args[@]}" 2>&1 | tee "$logs/bench_amg.log" ;;
  *) echo "unknown phase '$phase'" >&2; exit 2 ;;
esac
