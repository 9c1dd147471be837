"""Build script: the Python package, plus the optional CUDA extension ``promptseg._C``.

The extension is built when nvcc and a CUDA build of torch are present, or
when PROMPTSEG_FORCE_CUDA=1 (e.g. to compile on a machine without a GPU).
PROMPTSEG_SKIP_CUDA=1 skips it. Without it, promptseg runs the pure-PyTorch
reference ops. With no GPU visible, TORCH_CUDA_ARCH_LIST defaults to "8.0;9.0+PTX"
(sm_80 and sm_90 code, and PTX that newer GPUs compile at load time).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes")


def _cuda_sources() -> list[str]:
    patterns = ("*.cpp", "*.cu")
    return sorted(str(path.relative_to(ROOT)) for pattern in patterns for path in CSRC.rglob(pattern))


def _set_cuda_home() -> None:
    """Point CUDA_HOME at the toolkit when nvcc on PATH is a wrapper outside it (torch would
    otherwise take nvcc's grandparent folder, e.g. /usr/local, and miss lib64/)."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    for candidate in (Path("/usr/local/cuda"), Path(shutil.which("nvcc") or "/nonexistent").resolve().parent.parent):
        if (candidate / "bin" / "nvcc").is_file() and (candidate / "lib64").is_dir():
            os.environ["CUDA_HOME"] = str(candidate)
            return


def _should_build_cuda() -> tuple[bool, str]:
    if _flag("PROMPTSEG_SKIP_CUDA"):
        return False, "PROMPTSEG_SKIP_CUDA=1"
    if not _cuda_sources():
        return False, "csrc/ holds no sources"
    _set_cuda_home()
    try:
        import torch
    except ImportError:
        return False, "torch is not installed in the build environment (install with --no-build-isolation)"
    if _flag("PROMPTSEG_FORCE_CUDA"):
        return True, "PROMPTSEG_FORCE_CUDA=1"
    from torch.utils.cpp_extension import CUDA_HOME

    if torch.version.cuda is None:
        return False, "torch is a CPU-only build"
    if CUDA_HOME is None or shutil.which("nvcc", path=str(Path(CUDA_HOME) / "bin")) is None:
        return False, "nvcc was not found (set CUDA_HOME)"
    return True, f"nvcc at {CUDA_HOME} and torch {torch.__version__} (CUDA {torch.version.cuda})"


def _extensions() -> tuple[list, dict]:
    build, reason = _should_build_cuda()
    print(f"promptseg: {'building' if build else 'skipping'} the CUDA extension: {reason}", file=sys.stderr)
    if not build:
        return [], {}
    import torch
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
    extension = CUDAExtension(
        name="promptseg._C",
        sources=_cuda_sources(),
        include_dirs=[str(CSRC)],
        extra_compile_args={
            "cxx": ["-O3", "-std=c++20"],
            "nvcc": ["-O3", "-std=c++20", "--use_fast_math", "-lineinfo", "--expt-relaxed-constexpr"],
        },
        py_limited_api=False,
    )
    return [extension], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
