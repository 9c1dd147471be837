#!/usr/bin/env bash
# Run on the development machine (internet, no GPU needed), from anywhere in the repository:
#
#   bash tests/gpu/prepare.sh [--sam-fast-mirror GIT_DIR_OR_CLONE]
#
# Puts into git-ignored folders everything the GPU machine (no internet; torch, Triton, onnx,
# onnxruntime, safetensors, opencv, pytest, matplotlib already installed) lacks for
# tests/gpu/session.sh:
#   .whl/                                 CPython 3.12 manylinux wheels of the packages the GPU tests and
#                                         benchmarks import that the GPU machine does not have (the
#                                         official model, pycocotools, the annotation server's FastAPI stack,
#                                         the official sam2 with hydra: built here from source, see BUILT_WHEELS)
#   benchmarks/vendor/segment-anything-fast   pytorch-labs/segment-anything-fast (its package, licence and
#                                         README at one commit) for the side-by-side benchmarks
#   gpu_carry/commit.txt                  this checkout's commit, with -dirty when a tracked file (outside
#                                         benchmarks/results/) differs: what the records name (the device's
#                                         copy has no .git). Run this script again after every commit.
#   gpu_carry/_C*.so                      (optional, put there by hand) a build returned by an earlier run;
#                                         removed here when its build stamp no longer matches the sources
# Idempotent: wheels already there are kept, other versions of the same packages are removed, and the
# checkout is rewritten only when the mirror's commit changed. Ends by printing the total size, the
# `carry` list and the device command.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"

# What the GPU tests and benchmarks import that the GPU machine lacks (tests/, benchmarks/, the
# `test` extra of pyproject.toml, compared with the machine's package list). Pinned: two versions of
# one package in .whl/ would stop the install there.
WHEELS=(
  "segment-anything==1.0"   # the official model: parity tests, benchmark baselines (pure Python)
  "pycocotools==2.0.11"     # COCO RLE in the AMG tests and benchmark, and the annotation server (cp312-abi3)
  # The annotation server (`promptseg annotate`, the `annotate` extra) for benchmarks/annotate.py in the
  # bench-annotate phase; the versions tested on the development machine. Not on the GPU machine:
  "fastapi==0.165.0"
  "starlette==1.10.0"
  "pydantic==2.14.4"
  "pydantic-core==2.50.5"   # the only compiled one (cp312 manylinux2014, 2.2 MiB)
  "uvicorn==0.55.0"
  "annotated-types==0.8.0"
  "typing-inspection==0.4.5"
  "opentelemetry-api==1.45.3"   # a plain requirement of fastapi 0.165
  # On the GPU machine, but pinned here: h11 and anyio are in the measured path (uvicorn's HTTP parser,
  # the thread pool that runs the model), so the GPU round trip runs the same versions as
  # benchmarks/results/annotate_cpu.json; pydantic, pydantic-core and anyio need typing-extensions>=4.16.0,
  # and the machine's version is not recorded (an older one would stop the import).
  "h11==0.16.0"
  "anyio==4.16.0"
  "typing-extensions==4.16.0"
  # The official SAM 2 for the `sam2` step (benchmarks/sam2_gpu.py): hydra's two wheels here, the rest below.
  "hydra-core==1.3.8"
  "omegaconf==2.3.1"
)
# Published as source only: built here into pure-Python wheels (pip wheel, no build isolation; sam2's
# setup.py imports torch, so BUILD_PYTHON, default PYTHON, needs torch; SAM2_BUILD_CUDA=0, no extension).
BUILT_WHEELS=(
  "sam2==1.1.0"                      # the official SAM 2 (PyPI's republication of facebookresearch/sam2)
  "iopath==0.1.10"                   # sam2's
  "antlr4-python3-runtime==4.9.3"    # hydra-core's and omegaconf's (this exact version)
)
BUILD_PYTHON="${BUILD_PYTHON:-${PYTHON:-python3}}"
# Needs of those wheels that the GPU machine already has (checked against each wheel's metadata; see
# the device README's package list). click (uvicorn: >=7.0), idna (anyio: >=2.8) and annotated-doc
# (fastapi: >=0.0.2) take any version it could have.
DEVICE_HAS=(numpy matplotlib torch torchvision pillow opencv-python-headless onnx onnxruntime safetensors
  tqdm pytest triton scipy scikit-image click idna annotated-doc pyyaml portalocker packaging)
# Not carried: tensorrt (its wheels are over 1 GiB, far beyond the 64 MiB a call carries); the
# TensorRT tests skip without it.
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)
WHEEL_DIR=.whl
SAM_FAST_DIR=benchmarks/vendor/segment-anything-fast
SAM_FAST_FILES=(segment_anything_fast LICENSE README.md setup.py)
CARRY_DIR=gpu_carry   # commit.txt, and a returned promptseg/_C*.so to be carried (see README.md)

mirror="${SAM_FAST_MIRROR:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sam-fast-mirror) mirror="${2:?--sam-fast-mirror needs a path}"; shift 2 ;;
    --sam-fast-mirror=*) mirror="${1#*=}"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "prepare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# --- 1. ignore the folders (.gitignore does; else .git/info/exclude) --------------------------------------
for folder in "$WHEEL_DIR" "$SAM_FAST_DIR" "$CARRY_DIR"; do
  if ! git check-ignore -q --no-index "$folder/x"; then
    exclude="$(git rev-parse --git-path info/exclude)"
    mkdir -p "$(dirname "$exclude")"
    [[ -s "$exclude" && -n "$(tail -c 1 "$exclude")" ]] && echo >>"$exclude"   # end its last line
    echo "/$folder/" >>"$exclude"
    echo "added /$folder/ to $exclude"
  fi
done

# --- 2. wheels ---------------------------------------------------------------------------------------
mkdir -p "$WHEEL_DIR"
platform_args=()
for platform in "${PLATFORMS[@]}"; do platform_args+=(--platform "$platform"); done
normalise() { echo "$1" | tr '[:upper:]' '[:lower:]' | sed 's/[-.]/_/g'; }   # a name as wheel files spell it
for requirement in "${WHEELS[@]}" "${BUILT_WHEELS[@]}"; do
  name="${requirement%%==*}" version="${requirement#*==}"
  file_name="$(normalise "$name")"
  for old in "$WHEEL_DIR/$file_name"-*.whl; do   # other versions of this package
    [[ -e "$old" && "$(basename "$old")" != "$file_name-$version-"* ]] && { echo "removing $old"; rm -f "$old"; }
  done
  if compgen -G "$WHEEL_DIR/$file_name-$version-*.whl" >/dev/null; then
    echo "have $requirement"
    continue
  fi
  if [[ " ${BUILT_WHEELS[*]} " == *" $requirement "* ]]; then
    if ! "$BUILD_PYTHON" -c 'import torch, setuptools' 2>/dev/null; then
      echo "prepare.sh: $requirement is built from source with BUILD_PYTHON=$BUILD_PYTHON, which lacks torch or setuptools;" \
        "set BUILD_PYTHON to a Python that has both (the sam2 step needs it; the others do not)" >&2
      exit 1
    fi
    echo "building $requirement (pure Python)"
    SAM2_BUILD_CUDA=0 "$BUILD_PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
      -w "$WHEEL_DIR" "$requirement"
    continue
  fi
  echo "downloading $requirement"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp "${platform_args[@]}" -d "$WHEEL_DIR" "$requirement"
done

# Every non-extra requirement of every wheel must be on the GPU machine or among the wheels.
have=" ${DEVICE_HAS[*]} "
for requirement in "${WHEELS[@]}" "${BUILT_WHEELS[@]}"; do have+="$(normalise "${requirement%%==*}") "; done
have="$(normalise "$have")"
missing=()
for wheel in "$WHEEL_DIR"/*.whl; do
  while read -r dependency; do
    [[ -z "$dependency" ]] && continue
    [[ "$have" == *" $(normalise "$dependency") "* ]] || missing+=("$dependency (needed by $(basename "$wheel"))")
  done < <(unzip -p "$wheel" '*.dist-info/METADATA' | grep '^Requires-Dist:' | grep -v 'extra *==' |
           grep -vE "python_version *< *['\"]3\.([0-9]|1[0-2])['\"]" |   # only below Python 3.12 (the machine's)
           grep -vE "python_version *== *['\"]3\.([0-9]|1[01])['\"]" |   # only on one older Python (omegaconf's dataclasses)
           sed -E 's/^Requires-Dist: *([A-Za-z0-9_.-]+).*/\1/')
done
if [[ ${#missing[@]} -gt 0 ]]; then
  printf 'prepare.sh: not on the GPU machine and not in %s: %s\n' "$WHEEL_DIR" "${missing[@]}" >&2
  echo "add them to WHEELS in $0 (or to DEVICE_HAS if the machine has them)" >&2
  exit 1
fi
for wheel in "$WHEEL_DIR"/*.whl; do
  known=0
  for requirement in "${WHEELS[@]}" "${BUILT_WHEELS[@]}"; do
    [[ "$(basename "$wheel")" == "$(normalise "${requirement%%==*}")-"* ]] && known=1
  done
  [[ $known == 1 ]] || echo "note: $wheel is not one of this script's wheels; it is carried and installed too"
done

# --- 3. segment-anything-fast ---------------------------------------------------------------------------
git_dir=""
find_git_dir() {   # a git directory (bare, mirror or a clone's .git) holding a commit at HEAD
  local candidate="$1"
  if git --git-dir="$candidate" rev-parse -q --verify 'HEAD^{commit}' >/dev/null 2>&1; then
    git_dir="$(cd "$candidate" && pwd)"
  elif git -C "$candidate" rev-parse -q --verify 'HEAD^{commit}' >/dev/null 2>&1; then
    git_dir="$(git -C "$candidate" rev-parse --absolute-git-dir)"
  fi
  [[ -n "$git_dir" ]]
}
if [[ -n "$mirror" ]]; then
  find_git_dir "$mirror" || { echo "prepare.sh: $mirror is not a git repository with a commit at HEAD" >&2; exit 1; }
else
  mirrors="${MIRROR_ROOT:-/work/.mirror}/pytorch-labs+segment-anything-fast"
  for candidate in "$mirrors"/*/ "$mirrors"; do
    [[ -d "$candidate" ]] && find_git_dir "$candidate" && break
  done
fi
if [[ -z "$git_dir" ]]; then
  cat >&2 <<EOF
prepare.sh: no copy of pytorch-labs/segment-anything-fast was found (the wheels above are ready).
Get one, then run this script again:
  - in this workplace: call the search library's fetch tool with source
    "github:pytorch-labs/segment-anything-fast"; it creates a git directory under
    ${MIRROR_ROOT:-/work/.mirror}/pytorch-labs+segment-anything-fast/, which this script finds by itself;
  - elsewhere: git clone https://github.com/pytorch-labs/segment-anything-fast /some/path
    and pass --sam-fast-mirror /some/path (or set SAM_FAST_MIRROR).
(PyPI's "segment-anything-fast" is an unrelated project: do not pip install it.)
EOF
  exit 1
fi
commit="$(git --git-dir="$git_dir" rev-parse 'HEAD^{commit}')"
if [[ -f "$SAM_FAST_DIR/COMMIT" && "$(cat "$SAM_FAST_DIR/COMMIT")" == "$commit" && -d "$SAM_FAST_DIR/segment_anything_fast" ]]; then
  echo "have segment-anything-fast $commit in $SAM_FAST_DIR"
else
  rm -rf "$SAM_FAST_DIR"
  mkdir -p "$SAM_FAST_DIR"
  git --git-dir="$git_dir" archive --format=tar "$commit" "${SAM_FAST_FILES[@]}" | tar -x -C "$SAM_FAST_DIR"
  echo "$commit" >"$SAM_FAST_DIR/COMMIT"
  echo "wrote segment-anything-fast $commit (from $git_dir) to $SAM_FAST_DIR"
fi

# --- 4. the commit, a carried build ---------------------------------------------------------------------
# The rule of tests/gpu/summarize.py and benchmarks/harness.py: results files do not make the tree dirty.
mkdir -p "$CARRY_DIR"
commit="$(git rev-parse HEAD)"
if [[ -n "$(git status --porcelain --untracked-files=no -- ':/' ':(top,exclude)benchmarks/results')" ]]; then
  commit+="-dirty"
fi
echo "$commit" >"$CARRY_DIR/commit.txt"
echo "wrote $CARRY_DIR/commit.txt: $commit"
for library in "$CARRY_DIR"/_C*.so; do
  [[ -e "$library" ]] || continue
  state="$("$PYTHON" tests/gpu/summarize.py stamp "$library" || true)"
  if [[ $state == matches ]]; then
    echo "have $library (its build stamp matches the sources)"
  else
    echo "removing $library: its build stamp is $state (the device rebuilds from these sources)"
    rm -f "$library"
  fi
done

# --- 5. sizes, the carry list and the command ---------------------------------------------------------------
carry=("$WHEEL_DIR" "$(dirname "$SAM_FAST_DIR")" "$CARRY_DIR")
bytes() { du -sb "$@" | awk '{s += $1} END {print s + 0}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
carried="$(bytes "${carry[@]}")"
tree="$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null || true) |
        awk '$2 == "total" {s += $1} END {print s + 0}')"   # what every call sends anyway
echo
echo "wheels:"
printf "  %s\n" "$WHEEL_DIR"/*.whl
for folder in "${carry[@]}"; do echo "  $folder: $(mib "$(bytes "$folder")") MiB"; done
echo "carried folders: $(mib "$carried") MiB; with the working tree that travels anyway ($(mib "$tree") MiB): $(mib $((carried + tree))) MiB of the 64 MiB a call may send"
if (( carried + tree > 60 * 1048576 )); then
  echo "prepare.sh: WARNING: that is close to or over the 64 MiB limit" >&2
fi
json="$(printf '"%s", ' "${carry[@]}")"
echo "device call (tests/gpu/README.md): timeout_s 540, carry [${json%, }], command:"
echo "  bash tests/gpu/session.sh all"
