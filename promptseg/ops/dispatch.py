"""Loading the compiled extension and deciding whether a kernel may run.

This module is the only place that knows about ``promptseg._C``. An op asks
:func:`kernel_for` for its kernel; ``None`` means "use the reference", and :func:`kernel_limits`
for the shapes the kernel takes (stated once, by the extension). Code
outside ``promptseg.ops`` asks :func:`kernel_available` (exported by
``promptseg.ops``) the same question without receiving the kernel.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from types import MappingProxyType, ModuleType
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

DISABLE_ENV = "PROMPTSEG_DISABLE_KERNELS"
BACKENDS = ("auto", "reference")
"""``auto``: a kernel where one applies, else the reference; ``reference``: always the reference."""

OP_NAMES = ("vit_attention", "token_attention", "gathered_token_attention", "mask_postprocess")
"""Every op whose schema csrc/module.cpp defines under ``torch.ops.promptseg``."""


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


def extension_build_stamp() -> Optional[str]:
    """The build stamp compiled into the loaded extension (see :mod:`promptseg.ops.build_stamp`); None
    when the extension is not built or predates stamps."""
    stamp = getattr(_extension(), "build_stamp", None)
    return stamp() if callable(stamp) else None


def kernels_enabled() -> bool:
    """False when ``PROMPTSEG_DISABLE_KERNELS=1`` forces the reference everywhere."""
    return os.environ.get(DISABLE_ENV, "0") not in ("1", "true", "TRUE", "yes")


def _op_registered(op_name: str) -> bool:
    """True when ``torch.ops.promptseg.<op_name>`` resolves (the lookup raises when it is unknown)."""
    try:
        return hasattr(torch.ops.promptseg, op_name)
    except RuntimeError:
        return False


@lru_cache(maxsize=None)
def _registered_ops() -> tuple[str, ...]:
    """The names of :data:`OP_NAMES` that the loaded extension registered (empty without it)."""
    if not extension_loaded():
        return ()
    return tuple(sorted(name for name in OP_NAMES if _op_registered(name)))


@lru_cache(maxsize=None)
def kernel_limits(op_name: str) -> Mapping[str, Any]:
    """The shapes the kernel of ``op_name`` takes, as the extension states them
    (``promptseg._C.KERNEL_LIMITS``, from csrc/kernel_limits.h), read-only; empty without the
    extension (then no kernel runs, and the references need no limits).

    Keys per op: ``vit_attention``: ``head_dims`` (tuple of int), ``max_grid_side_sum`` (int);
    ``token_attention``, ``gathered_token_attention``: ``head_dims``; ``mask_postprocess``:
    ``max_low_res_width``.

    Raises:
        RuntimeError: the extension is loaded but states no limits for ``op_name`` (it was built
            from older sources: rebuild it with ``python setup.py build_ext --inplace``).
    """
    extension = _extension()
    if extension is None:
        return MappingProxyType({})
    limits = getattr(extension, "KERNEL_LIMITS", {}).get(op_name)
    if limits is None:
        raise RuntimeError(
            f"promptseg._C ({getattr(extension, '__file__', '?')}) states no kernel limits for {op_name!r}: it was "
            "built from older sources; rebuild it (python setup.py build_ext --inplace)"
        )
    return MappingProxyType(dict(limits))


def op_built(op_name: str) -> bool:
    """True when the extension is loaded and registered ``torch.ops.promptseg.<op_name>``."""
    return op_name in _registered_ops()


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
    if check_backend(backend) == "reference" or not (kernels_enabled() and op_built(op_name)):
        return None
    for tensor in tensors:
        if not tensor.is_cuda or tensor.dtype not in (torch.bfloat16, torch.float16):
            return None
    return getattr(torch.ops.promptseg, op_name)


def kernel_available(op_name: str, *tensors: torch.Tensor, backend: str = "auto") -> bool:
    """True when :func:`kernel_for` would hand the op ``op_name`` a kernel for ``tensors``.

    The check of dispatch itself (backend, extension, ``PROMPTSEG_DISABLE_KERNELS``, CUDA bf16/fp16
    tensors); an op may still run its reference for shapes its kernel does not take.
    """
    return kernel_for(op_name, *tensors, backend=backend) is not None
