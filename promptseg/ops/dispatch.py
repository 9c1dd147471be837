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

DISABLE_ENV = "PROMPTSEG_DISABLE_KERNELS"


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
    if not extension_loaded():
        return ()
    namespace = torch.ops.promptseg
    names = (name for name in dir(namespace) if not name.startswith("_"))
    return tuple(sorted(name for name in names if hasattr(getattr(namespace, name), "default")))


def available_kernels() -> list[str]:
    """Names of the ops the extension registered under ``torch.ops.promptseg``."""
    return list(_registered_ops())


def kernel_for(op_name: str, *tensors: torch.Tensor) -> Optional[Callable[..., torch.Tensor]]:
    """The registered kernel ``torch.ops.promptseg.<op_name>`` if it may run on ``tensors``.

    A kernel runs only when the extension is built, kernels are not disabled,
    every tensor lives on a CUDA device and the floating dtype is bf16 or fp16.
    """
    if not (kernels_enabled() and extension_loaded()):
        return None
    if op_name not in _registered_ops():
        return None
    for tensor in tensors:
        if not tensor.is_cuda or tensor.dtype not in (torch.bfloat16, torch.float16):
            return None
    return getattr(torch.ops.promptseg, op_name)
