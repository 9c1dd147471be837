#!/usr/bin/env bash
# compute-sanitizer memcheck, racecheck, synccheck and initcheck on small vit_attention calls
# (tests/gpu/sanitize_encoder_driver.py). Needs a GPU and promptseg._C built with the kernel.
#   PYTHON=.venv/bin/python tests/gpu/sanitize_encoder.sh
# Exits non-zero if any tool reports an error or the driver finds a wrong result.
set -uo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python}
SANITIZER=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")}
if [ ! -x "$SANITIZER" ]; then
  echo "compute-sanitizer not found: set COMPUTE_SANITIZER or CUDA_HOME" >&2
  exit 2
fi
# Without the caching allocator every tensor is its own allocation, so memcheck sees accesses
# past the end of a tensor instead of landing in a neighbouring cached block.
export PYTORCH_NO_CUDA_MEMORY_CACHING=1

status=0
for tool in memcheck racecheck synccheck initcheck; do
  echo "== compute-sanitizer --tool $tool"
  if ! "$SANITIZER" --tool "$tool" --error-exitcode 99 "$PYTHON" tests/gpu/sanitize_encoder_driver.py; then
    echo "== $tool: FAILED" >&2
    status=1
  fi
done
exit $status
