"""Loading the compiled extension and deciding whether a kernel may run.

This module is the only place that knows about ``promptseg._C``. An op asks
:func:`kernel_for` for its kernel; ``None`` means "use the reference".
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from types import ModuleType
from typing import Callable, Optional

import torch
from torch import nn

DISABLE_ENV = "PROMPTSEG_DISABLE_KERNELS"
BACKENDS = ("auto", "reference")
"""``auto``: a kernel where one applies, else the reference; ``reference``: always the reference."""


@lru_cache(maxsize=None)
def _extension() -> Optional[ModuleType]:
    """The compiled extension module, or None when it was not built."""
    try:
        return importlib.import_module("promptseg._C")
    except ImportError:
        return None


def extension_loaded() -> bool:
    """True when the CUDA extension was built and imports."""
    return _extension() is not None


def kernels_enabled() -> bool:
    """False when ``PROMPTSEG_DISABLE_KERNELS=1`` forces the reference everywhere."""
    return os.environ.get(DISABLE_ENV, "0") not in ("1", "true", "TRUE", "yes")


@lru_cache(maxsize=None)
def _registered_ops() -> tuple[str, ...]:
    """Names of the ops registered in the ``promptseg`` namespace (empty without the extension).

    Read from the dispatcher's op table: ``dir(torch.ops.promptseg)`` lists only
    ops that something has already looked up.
    """
    if not extension_loaded():
        return ()
    prefix = "promptseg::"
    names = {name[len(prefix):].split(".")[0] for name in torch._C._dispatch_get_all_op_names() if name.startswith(prefix)}
    return tuple(sorted(names))


def available_kernels() -> list[str]:
    """Names of the ops the extension registered under ``torch.ops.promptseg``."""
    return list(_registered_ops())


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else a ValueError naming them."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    return backend


def set_backend(module: nn.Module, backend: str) -> nn.Module:
    """Make every op call of ``module`` (e.g. a whole Sam) use ``backend``; returns ``module``.

    Modules that call ops carry a ``backend`` attribute which they pass to the op.
    """
    check_backend(backend)
    for submodule in module.modules():
        if hasattr(submodule, "backend"):
            submodule.backend = backend
    return module


def kernel_for(op_name: str, *tensors: torch.Tensor, backend: str = "auto") -> Optional[Callable[..., torch.Tensor]]:
    """The registered kernel ``torch.ops.promptseg.<op_name>`` if it may run on ``tensors``.

    A kernel runs only when ``backend`` is ``auto``, the extension is built,
    kernels are not disabled, every tensor lives on a CUDA device and the
    floating dtype is bf16 or fp16.
    """
    if check_backend(backend) == "reference" or not (kernels_enabled() and extension_loaded()):
        return None
    if op_name not in _registered_ops():
        return None
    for tensor in tensors:
        if not tensor.is_cuda or tensor.dtype not in (torch.bfloat16, torch.float16):
            return None
    return getattr(torch.ops.promptseg, op_name)
