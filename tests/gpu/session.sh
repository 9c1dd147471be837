#!/usr/bin/env bash
# Everything that needs a GPU, in one device call (tests/gpu/README.md gives the call). On the GPU machine,
# after tests/gpu/prepare.sh on the development machine:
#
#   bash tests/gpu/session.sh [STEP_OR_GROUP [ARG...]]...      # default: all
#
# The steps run in the order given, under one time budget for the command (PROMPTSEG_GPU_BUDGET_S,
# default 510 s), each under its own cap (CAP_<STEP>_S, e.g. CAP_ENCODER_S); a check that fails or
# times out is recorded and the next one still runs; a step the budget has no room left for is recorded
# as skipped, and the end of the output names the command that runs those. A step named twice runs once.
#
#   all       = build tests headline sanitize rest                   (the priority order)
#   build     build promptseg._C for this GPU, or reuse a build whose stamp matches the sources, then
#             `promptseg info` (every other step builds first too)
#   tests     pytest -m gpu over the whole tests/ tree
#   headline  = encoder decoder amg annotate                          (the headline figures)
#     encoder           benchmarks/encoder.py: vit_b, vit_h; batch 1, 8          -> encoder_<gpu>.json
#     decoder           benchmarks/decoder.py: click latency, prompt throughput -> decoder_<gpu>.json
#     amg               benchmarks/amg.py: vit_h, 32x32 grid, no crops         -> amg_<gpu>.json
#     annotate          benchmarks/annotate.py: ViT-H click round trip          -> annotate_<gpu>.json
#   sanitize  = memcheck racecheck      compute-sanitizer: one process per tool over every kernel
#   rest      = annotate-bundled encoder-attention synccheck initcheck
#     annotate-bundled  annotate.py with the bundled vit_tiny (real masks)      -> annotate_<gpu>_bundled.json
#     encoder-attention benchmarks/encoder_attention.py: vit_b, vit_h; batch 1, 8 -> encoder_attention_<gpu>.json
#   bench-annotate = annotate annotate-bundled
#   bench-samfast [MODEL [BATCH]]   encoder.py with segment-anything-fast (max-autotune), one model and
#                                   batch (default vit_b 1)          -> encoder_<gpu>_samfast_<model>_b<batch>.json
#   bench-amg [MODEL ["CROPS"]]     amg.py, all four implementations (default vit_b "0 1")
#                                                                    -> amg_<gpu>_<model>_crop<crops>.json
#   sam2      benchmarks/sam2_gpu.py: SAM 2.1 hiera_l, official sam2 against promptseg.sam2, fp32 and bf16
#             autocast: set_image, a click, AMG 32x32 (issue 26; the official sam2 comes from .whl/)
#                                                                    -> sam2_<gpu>.json
#             Not in `all` (nor `rest`): `all` can already fill the 8 returned files (9 candidates after a
#             fresh build), so its result would land in the log. Run it as its own call, or after a
#             rerun with a carried build: `bash tests/gpu/session.sh sam2` (CAP_SAM2_S, default 150 s).
#
# Output ($OUT, the device tool's return folder, else gpu_out/), at most 8 files, rewritten after every
# check so that a killed command still returns them: gpu_checks_<gpu>.json (the record to commit to
# benchmarks/results/: environment and toolchain, every check's status, seconds and note, pass/fail/skip
# per test file, per sanitizer tool), session_log.txt (the end of every check's log), the built
# promptseg/_C*.so (unless it was carried in), and the benchmarks' result files, to commit as they are.
#
# Environment: PYTHON (python3); PROMPTSEG_PREBUILT (default gpu_carry: a folder or file holding a _C*.so
# from an earlier run, used when its stamp matches the sources and it loads); PROMPTSEG_COMMIT (default:
# gpu_carry/commit.txt, written by prepare.sh: the commit to record where the copy has no .git).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
root="$PWD"

# --- the steps to run ------------------------------------------------------------------------------
usage() { echo "usage: bash tests/gpu/session.sh [STEP_OR_GROUP [ARG...]]... (see the top of $0)" >&2; exit 2; }
steps=()           # in order, each once
declare -A step_args=()
add_step() {
  local step
  for step in "$@"; do
    [[ " ${steps[*]} " == *" $step "* ]] || steps+=("$step")
  done
}
expand() {   # expand NAME: add the steps of a group or step NAME
  case "$1" in
    all) expand build; expand tests; expand headline; expand sanitize; expand rest ;;
    headline) add_step encoder decoder amg annotate ;;
    sanitize) add_step memcheck racecheck ;;
    rest) add_step annotate-bundled encoder-attention synccheck initcheck ;;
    bench-annotate) add_step annotate annotate-bundled ;;
    build|tests|encoder|decoder|amg|annotate|memcheck|racecheck|annotate-bundled|encoder-attention|synccheck|initcheck|bench-samfast|bench-amg|sam2)
      add_step "$1" ;;
    *) return 1 ;;
  esac
}
[[ $# -eq 0 ]] && set -- all
last=""
for arg in "$@"; do
  if expand "$arg"; then
    last="$arg"
  elif [[ $last == bench-samfast || $last == bench-amg ]]; then
    step_args[$last]="${step_args[$last]:+${step_args[$last]} }$arg"
  else
    echo "session.sh: unknown step or group '$arg'" >&2
    usage
  fi
done

# --- settings --------------------------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
out="${OUT:-$root/gpu_out}"
logs="$(mktemp -d /tmp/promptseg_gpu.XXXXXX)/logs"
mkdir -p "$out" "$logs"
budget="${PROMPTSEG_GPU_BUDGET_S:-510}"   # the device call's timeout_s (540 in the README) less 30 s
reserve=15                                # kept back for the records at the end
started=$SECONDS
nproc="$(nproc 2>/dev/null || echo 8)"
max_out_files=8                           # what the device tool returns
export PYTHONUNBUFFERED=1                 # logs written as they come, for a check stopped at its cap
carried="${PROMPTSEG_PREBUILT:-gpu_carry}"
if [[ -z "${PROMPTSEG_COMMIT:-}" && -f gpu_carry/commit.txt ]]; then
  PROMPTSEG_COMMIT="$(head -n 1 gpu_carry/commit.txt)"
fi
export PROMPTSEG_COMMIT="${PROMPTSEG_COMMIT:-}"   # what the records and benchmarks/harness.py name without .git
# The session checks and measures the kernels, which are opt-in until a record of such a session
# verifies them (promptseg.ops.kernel_policy): opt in for every step.
export PROMPTSEG_KERNELS="${PROMPTSEG_KERNELS:-1}"

# Caps per step (seconds), each overridden by CAP_<STEP>_S; the budget cuts the later ones short.
declare -A cap_default=([wheels]=60 [build]=300 [info]=60 [tests]=240 [encoder]=150 [decoder]=90 [amg]=120
  [annotate]=150 [memcheck]=120 [racecheck]=120 [annotate-bundled]=90 [encoder-attention]=120 [synccheck]=90
  [initcheck]=90 [bench-samfast]=540 [bench-amg]=540 [sam2]=150)
CAP_TEST_S="${CAP_TEST_S:-90}"   # one test (pytest-timeout), so that a hang cannot take the whole step
cap_of() {
  local variable="CAP_${1//-/_}_S"
  variable="${variable^^}"
  echo "${!variable:-${cap_default[$1]}}"
}

# --- records ---------------------------------------------------------------------------------------
# write_records: OUT/gpu_checks_<gpu>.json and OUT/session_log.txt from LOGS (tests/gpu/summarize.py).
write_records() {
  "$PYTHON" tests/gpu/summarize.py write "$logs" "$out" "${steps[*]}" >/dev/null 2>"$logs/summarize.err" ||
    echo "   (summarize.py failed: $(tail -n 1 "$logs/summarize.err"))"
}

# record NAME GROUP STATUS RC SECONDS LOG NOTE: one line of checks.tsv, then the records.
record() {
  local note="${7//$'\t'/ }"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${note//$'\n'/ }" >>"$logs/checks.tsv"
  write_records
  printf '   %-8s %s%s\n' "$3" "$1" "${7:+ ($7)}"
}

skip() { record "$1" "$2" skipped "" 0 "" "$3"; }

# put_out FILE: copy FILE into OUT if the 8 files the device tool returns leave room (a file of the same
# name is replaced); fails otherwise.
put_out() {
  local files
  files="$(find "$out" -maxdepth 1 -type f | wc -l)"
  [[ -e "$out/$(basename "$1")" ]] || ((files < max_out_files)) || return 1
  cp -f "$1" "$out/"
}

# check NAME GROUP CAP_S [--int] CMD...: run CMD under min(CAP_S, what the budget leaves), log to
# LOGS/NAME.log, record passed / failed / timeout (with CHECK_NOTE, if set, in the note).
# --int stops it with SIGINT (pytest then still writes its JUnit file). Returns 0 when it passed.
check() {
  local name="$1" group="$2" cap="$3" signal=TERM
  shift 3
  if [[ "${1:-}" == --int ]]; then signal=INT; shift; fi
  local left=$((budget - (SECONDS - started) - reserve))
  local note="${CHECK_NOTE:-}"
  CHECK_NOTE=""
  if ((left < 10)); then
    skip "$name" "$group" "no time left in the ${budget} s budget"
    return 1
  fi
  [[ $cap -lt $left ]] || note="${note:+$note; }cut to the budget's ${left} s"
  local limit=$((cap < left ? cap : left))
  echo "== $name (at most ${limit} s): $*"
  local t0=$SECONDS rc status
  timeout -s "$signal" -k 20 "$limit" "$@" >"$logs/$name.log" 2>&1
  rc=$?
  if ((rc == 0)); then status=passed
  elif ((rc == 124 || rc == 137)); then status=timeout; note="${note:+$note; }stopped after ${limit} s"
  else status=failed; fi
  if [[ $status != passed ]]; then tail -n 12 "$logs/$name.log" | sed 's/^/   | /'; fi
  record "$name" "$group" "$status" "$rc" $((SECONDS - t0)) "$name.log" "$note"
  [[ $status == passed ]]
}

# --- environment, carried wheels ----------------------------------------------------------------------
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" tests/gpu/summarize.py env "$logs" >"$logs/env.log" 2>&1
env_field() {   # env_field KEY...: a value of LOGS/env.json ("" when absent)
  "$PYTHON" -c 'import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2:]:
    value = value.get(key) if isinstance(value, dict) else None
print("" if value is None else value)' "$logs/env.json" "$@" 2>/dev/null
}
gpu_visible="$(env_field gpu_visible)"
[[ $gpu_visible == True ]] && gpu_visible=1 || gpu_visible=0
gpu="$(env_field gpu)"
gpu="${gpu:-unknown}"
sanitizer="$(env_field toolchain compute_sanitizer path)"
echo "== $(head -c 600 "$logs/env.log")"
write_records   # the two record files exist from the start (put_out counts them)
torch_error="$(env_field torch_error)"
if [[ -n $torch_error ]]; then
  record torch setup failed "" 0 env.log "torch does not import: $torch_error"
elif [[ $gpu_visible != 1 ]] && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then   # a GPU that torch cannot use
  record gpu setup failed "" 0 env.log "nvidia-smi lists a GPU, torch.cuda.is_available() is False: $(nvidia-smi -L | head -n 1)"
fi

python_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo unknown)"
if ! compgen -G ".whl/*.whl" >/dev/null; then
  skip wheels setup "no .whl/ folder: tests that need segment_anything or pycocotools skip, annotate too (run tests/gpu/prepare.sh)"
elif [[ $python_version != 3.12 ]]; then   # e.g. a development machine: its own packages are used
  skip wheels setup "the .whl/ wheels are for CPython 3.12 (the GPU machine's); $PYTHON is $python_version"
else
  # As the device README says: --no-deps, into a folder on PYTHONPATH (the machine has no internet).
  check wheels setup "$(cap_of wheels)" "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
suffix="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
so="promptseg/_C$suffix"
sam_fast=benchmarks/vendor/segment-anything-fast
[[ -d "$sam_fast/segment_anything_fast" ]] || sam_fast=""

# --- build (or reuse) the extension --------------------------------------------------------------------
loads() { "$PYTHON" -c 'import torch, promptseg._C' >/dev/null 2>&1; }
# stamp_state FILE: matches | stale | unstamped | missing (the build stamp, promptseg/ops/build_stamp.py)
stamp_state() {
  local state
  state="$("$PYTHON" tests/gpu/summarize.py stamp "$1" 2>/dev/null)"
  echo "${state:-unknown}"
}

extension=0         # 1 once promptseg._C is built from these sources and loads
so_carried=0        # 1 when it came with the call (then it is not returned)
notes=""
add_note() { notes="${notes:+$notes; }$1"; }
build_extension() {
  local prebuilt="$carried" state
  [[ -d "$prebuilt" ]] && prebuilt="$prebuilt/_C$suffix"
  if [[ -f "$prebuilt" ]]; then
    state="$(stamp_state "$prebuilt")"
    if [[ $state == matches ]]; then
      cmp -s "$prebuilt" "$so" || cp -f "$prebuilt" "$so"
      if loads; then
        so_carried=1
        record build build passed 0 0 "" "carried $prebuilt: its stamp matches the sources and it loads"
        return 0
      fi
      add_note "carried $prebuilt does not load with this torch"
    else
      add_note "carried $prebuilt is $state"
    fi
  elif [[ -n "${PROMPTSEG_PREBUILT:-}" ]]; then
    add_note "PROMPTSEG_PREBUILT=$PROMPTSEG_PREBUILT holds no _C$suffix"
  fi
  if [[ -f "$so" ]]; then   # e.g. left on a warm machine by an earlier call
    state="$(stamp_state "$so")"
    if [[ $state == matches ]] && loads; then
      record build build passed 0 0 "" "${notes:+$notes; }reused $so: its stamp matches the sources and it loads"
      return 0
    fi
    [[ $state == matches ]] && state="matching but not loading"
    add_note "$so here is $state"
  fi
  if [[ $gpu_visible != 1 && -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
    skip build build "${notes:+$notes; }no CUDA GPU visible and no TORCH_CUDA_ARCH_LIST: nothing to build for"
    return 1
  fi
  rm -f "$so"   # a stale or broken build is never reused
  local arch="${TORCH_CUDA_ARCH_LIST:-$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}"
  add_note "sm_${arch//./}, $nproc jobs"
  CHECK_NOTE="$notes"
  # PROMPTSEG_BUILD_EXT_ONLY: setup.py reads no pyproject.toml, so the machine's setuptools version does not matter.
  check build build "$(cap_of build)" env PROMPTSEG_FORCE_CUDA=1 PROMPTSEG_BUILD_EXT_ONLY=1 TORCH_CUDA_ARCH_LIST="$arch" \
    MAX_JOBS="$nproc" "$PYTHON" setup.py build_ext --inplace || return 1
  state="$(stamp_state "$so")"
  [[ $state == matches ]] || { record build-stamp build failed 1 0 "" "$so was built but its stamp is $state"; return 1; }
  loads || { record load build failed 1 0 "" "$so was built but does not import"; return 1; }
}

ensure_extension() {
  if build_extension; then
    extension=1
    if [[ $so_carried != 1 ]]; then put_out "$so" || echo "   no room in $out for $so"; fi
  fi
  check info build "$(cap_of info)" "$PYTHON" -m promptseg info
}

# --- checks ------------------------------------------------------------------------------------------------
needs_gpu() {   # needs_gpu NAME GROUP: 0 when a GPU is visible, else NAME is recorded as skipped
  [[ $gpu_visible == 1 ]] && return 0
  skip "$1" "$2" "no CUDA GPU visible"
  return 1
}

run_tests() {
  needs_gpu tests tests || return
  local timeout_args=()
  "$PYTHON" -c 'import pytest_timeout' 2>/dev/null && timeout_args=(--timeout "$CAP_TEST_S")
  # By marker, over the whole tree: wherever a GPU test lives under tests/, it runs.
  check tests tests "$(cap_of tests)" --int "$PYTHON" -m pytest tests -m gpu -v -rfEs -p no:cacheprovider \
    --junitxml "$logs/pytest_gpu.xml" -o junit_family=xunit1 "${timeout_args[@]}"
}

# sanitize TOOL: compute-sanitizer TOOL over every kernel, in one process (tests/gpu/sanitize_kernels.py).
sanitize() {
  local tool="$1"
  needs_gpu "$tool" sanitizer || return
  if [[ $extension != 1 ]]; then skip "$tool" sanitizer "promptseg._C is not built"; return; fi
  if [[ -z "$sanitizer" ]]; then   # a failure of the record, not a skip: the check could not run
    record "$tool" sanitizer failed "" 0 "" "compute-sanitizer not found (PATH, beside nvcc, CUDA_HOME, /usr/local/cuda; see env.json)"
    return
  fi
  # Only promptseg's kernels are checked (PyTorch's are not under test, and it is much faster); without
  # the caching allocator each tensor is its own allocation, so memcheck sees an access past a tensor's
  # end instead of landing in a neighbouring cached block.
  check "$tool" sanitizer "$(cap_of "$tool")" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    "$sanitizer" --tool "$tool" --error-exitcode 99 --kernel-name kns=promptseg "$PYTHON" tests/gpu/sanitize_kernels.py
}

# bench NAME RESULT CMD...: a benchmark run whose benchmarks/results/<RESULT>.json is returned in OUT, or,
# when OUT has no room left, appended to its log (in session_log.txt); LOGS/results.tsv says which.
bench() {
  local name="$1" result="$2"
  shift 2
  needs_gpu "$name" benchmark || return
  local path="benchmarks/results/$result.json" before="$logs/.before_$name" where
  touch "$before"
  sleep 1   # so that a result written by this run is strictly newer than the marker
  check "$name" benchmark "$(cap_of "$name")" "$@"
  [[ -f "$path" && "$path" -nt "$before" ]] || return 0   # not written by this run (a committed result, or none)
  if put_out "$path"; then
    where="file"
  else
    where="log"
    { echo; echo "== $path (not returned as a file: $out already holds $max_out_files files)"; cat "$path"; } >>"$logs/$name.log"
  fi
  printf '%s\t%s\t%s\n' "$name" "$result.json" "$where" >>"$logs/results.tsv"
  write_records
}

need_sam_fast() {
  [[ -n "$sam_fast" ]] && return 0
  skip "$1" benchmark "no benchmarks/vendor/segment-anything-fast (run tests/gpu/prepare.sh, carry benchmarks/vendor)"
  return 1
}

# need_wheels NAME WHAT IMPORTS WHEEL: the carried packages WHAT (the Python statement IMPORTS) import; else
# NAME is recorded with the reason: skipped when the wheels were not carried (or not installed: not
# CPython 3.12), failed when they were installed (.whl/WHEEL-*.whl is there).
need_wheels() {
  local error status=skipped note
  error="$("$PYTHON" -c "$3" 2>&1 | tail -n 1)" && return 0
  note="$2 do not import (${error:-?}): run tests/gpu/prepare.sh and carry .whl"
  if [[ $python_version == 3.12 ]] && compgen -G ".whl/$4-*.whl" >/dev/null; then
    status=failed note="$2 do not import from the installed wheels: ${error:-?}"
  fi
  record "$1" benchmark "$status" "" 0 "" "$note"
  return 1
}
# the annotation server's packages (the `annotate` extra); the official SAM 2 with hydra (issue 26)
need_annotate_packages() { need_wheels "$1" "the annotation server's packages" 'import fastapi, uvicorn, pycocotools' fastapi; }
need_official_sam2() { need_wheels "$1" "the official sam2 and hydra" 'import sam2.build_sam, hydra' sam2; }

# segment-anything-fast compiles its image encoder with max-autotune: many Triton GEMM candidates,
# compiled in parallel; keep the search to the default space and one model (and shape) per command.
export TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-$nproc}"
export TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_SEARCH_SPACE="${TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_SEARCH_SPACE:-DEFAULT}"
image=tests/data/images/truck.jpg   # a real photo, 1800x1200

run_step() {
  local step="$1" model batch crops name sam_fast_args=()
  [[ -n "$sam_fast" ]] && sam_fast_args=(--sam-fast-path "$sam_fast")
  case "$step" in
    build) ;;   # done first, below
    tests) run_tests ;;
    encoder)   # promptseg bf16 against the official model in fp32 and bf16
      bench encoder "encoder_$gpu" "$PYTHON" benchmarks/encoder.py --models vit_b vit_h --batches 1 8 --name "encoder_$gpu" ;;
    decoder)   # with segment-anything-fast's predictor where it was carried (its decoder path: no compile)
      bench decoder "decoder_$gpu" "$PYTHON" benchmarks/decoder.py --model vit_b "${sam_fast_args[@]}" --name "decoder_$gpu" ;;
    amg)   # segment-anything-fast's max-autotune compile does not fit here: bench-amg has it
      needs_gpu amg benchmark && need_sam_fast amg && bench amg "amg_$gpu" "$PYTHON" benchmarks/amg.py --models vit_h --crop-n-layers 0 \
        --impls promptseg promptseg-bf16 official --iters 3 --sam-fast-path "$sam_fast" --results-name "amg_$gpu" ;;
    annotate|annotate-bundled)
      # Issue 13: the click round trip of `promptseg annotate`. No official checkpoint is on the machine:
      # --model without --checkpoint builds RANDOM weights (the JSON records "random_weights": true); the
      # decode time holds, but noise masks' long RLEs inflate the service and HTTP parts. The bundled
      # vit_tiny (real weights) on the same photo gives the overhead for real masks on this machine.
      needs_gpu "$step" benchmark && need_annotate_packages "$step" || return
      if [[ $step == annotate ]]; then
        bench annotate "annotate_$gpu" "$PYTHON" benchmarks/annotate.py --model vit_h --image "$image" --results-name "annotate_$gpu"
      else
        bench annotate-bundled "annotate_${gpu}_bundled" "$PYTHON" benchmarks/annotate.py --image "$image" \
          --results-name "annotate_${gpu}_bundled"
      fi ;;
    memcheck|racecheck|synccheck|initcheck) sanitize "$step" ;;
    encoder-attention)   # our kernel against SDPA with a materialised bias and FlexAttention
      bench encoder-attention "encoder_attention_$gpu" "$PYTHON" benchmarks/encoder_attention.py --models vit_b vit_h \
        --batches 1 8 --name "encoder_attention_$gpu" ;;
    sam2)   # issue 26: SAM 2.1-L side by side with the official sam2 (random weights, every AMG candidate kept)
      needs_gpu sam2 benchmark && need_official_sam2 sam2 && bench sam2 "sam2_$gpu" "$PYTHON" benchmarks/sam2_gpu.py \
        --models l --name "sam2_$gpu" ;;
    bench-samfast)
      # One model and one batch size per command: each is one max-autotune compile of segment-anything-fast's
      # encoder (a second batch size would recompile, with dynamic shapes).
      read -r model batch <<<"${step_args[bench-samfast]:-}"
      model="${model:-vit_b}" batch="${batch:-1}"
      name="encoder_${gpu}_samfast_${model}_b$batch"
      needs_gpu bench-samfast benchmark && need_sam_fast bench-samfast && bench bench-samfast "$name" "$PYTHON" benchmarks/encoder.py --models "$model" \
        --batches "$batch" --sam-fast-path "$sam_fast" --name "$name" ;;
    bench-amg)
      # One model per command (its segment-anything-fast encoder compiles once, max-autotune); vit_h runs its
      # crop settings in separate commands: bench-amg vit_h 0, then bench-amg vit_h 1.
      read -r model crops <<<"${step_args[bench-amg]:-}"
      model="${model:-vit_b}" crops="${crops:-0 1}"
      name="amg_${gpu}_${model}_crop${crops// /}"
      # shellcheck disable=SC2086  # crops is a list
      needs_gpu bench-amg benchmark && need_sam_fast bench-amg && bench bench-amg "$name" "$PYTHON" benchmarks/amg.py --models "$model" \
        --crop-n-layers $crops --sam-fast-path "$sam_fast" --results-name "$name" ;;
  esac
}

ensure_extension
for step in "${steps[@]}"; do run_step "$step"; done

"$PYTHON" tests/gpu/summarize.py write "$logs" "$out" "${steps[*]}" --print
echo "== $((SECONDS - started)) s; in $out:"
ls -1 "$out"
"$PYTHON" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["ok"] else 1)' "$out/gpu_checks_$gpu.json"
