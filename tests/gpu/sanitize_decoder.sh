#!/usr/bin/env bash
# compute-sanitizer memcheck, racecheck, synccheck and initcheck over small runs of the decoder kernels
# (tests/gpu/sanitize_decoder.py). Needs a CUDA GPU and the built extension; run from anywhere:
#   bash tests/gpu/sanitize_decoder.sh [python]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${1:-python}"
sanitizer="${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer"
if [[ ! -x "$sanitizer" ]]; then
  sanitizer="$(command -v compute-sanitizer || true)"
fi
if [[ -z "$sanitizer" ]]; then
  echo "sanitize_decoder.sh: compute-sanitizer not found (set CUDA_HOME)" >&2
  exit 2
fi
cd "$root"
for tool in memcheck racecheck synccheck initcheck; do
  echo "== compute-sanitizer --tool $tool"
  # Only the kernels of promptseg._C: PyTorch's own kernels are not under test.
  "$sanitizer" --tool "$tool" --error-exitcode 1 --kernel-name kns=promptseg \
    "$python" "$here/sanitize_decoder.py"
done
echo "sanitize_decoder.sh: no errors"
