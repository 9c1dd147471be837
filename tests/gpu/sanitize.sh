#!/usr/bin/env bash
# compute-sanitizer over every promptseg kernel (tests/gpu/sanitize_kernels.py), one process per tool.
# Needs a CUDA GPU and the built extension; run from anywhere (tests/gpu/session.sh runs the same
# command for memcheck and racecheck under its time budget):
#   PYTHON=python3 bash tests/gpu/sanitize.sh [TOOL...]      # default: memcheck racecheck synccheck initcheck
# Exits non-zero when compute-sanitizer is not found, or a tool reports an error or a wrong result.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
PYTHON="${PYTHON:-python3}"
# Found as tests/gpu/summarize.py finds it: $COMPUTE_SANITIZER, PATH, beside nvcc, CUDA_HOME, /usr/local/cuda.
sanitizer="$("$PYTHON" tests/gpu/summarize.py sanitizer)" || {
  echo "sanitize.sh: compute-sanitizer not found (set COMPUTE_SANITIZER or CUDA_HOME)" >&2
  exit 2
}
[[ $# -gt 0 ]] || set -- memcheck racecheck synccheck initcheck
status=0
for tool in "$@"; do
  echo "== compute-sanitizer --tool $tool"
  # Only the kernels of promptseg._C (PyTorch's are not under test); without the caching allocator each
  # tensor is its own allocation, so memcheck sees an access past a tensor's end.
  if ! PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$sanitizer" --tool "$tool" --error-exitcode 99 --kernel-name kns=promptseg \
    "$PYTHON" tests/gpu/sanitize_kernels.py; then
    echo "== $tool: FAILED" >&2
    status=1
  fi
done
exit $status
