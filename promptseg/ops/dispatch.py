"""Loading the compiled extension, deciding whether a kernel may run, and checking it before it does.

This module is the only place that knows about ``promptseg._C``. An op asks :func:`kernel_for` for its
kernel; ``None`` means "use the reference", and :func:`kernel_limits` gives the shapes the kernel takes
(stated once, by the extension). Code outside ``promptseg.ops`` asks :func:`kernel_available`
(exported by ``promptseg.ops``) the same question without receiving the kernel.

Whether a kernel runs, per call (:func:`kernel_for`), in this order:

1. ``backend="reference"``, no extension, the op not registered, or ``PROMPTSEG_DISABLE_KERNELS=1``:
   the reference.
2. A tensor that is not a CUDA bf16/fp16 tensor: the reference.
3. ``backend="auto"`` (the default): the kernels are **opt-in** until a GPU has verified them. They
   run by default on a device only when a committed GPU record,
   ``benchmarks/results/gpu_checks_<gpu>.json`` with every check and test passing, covers its
   compute capability (:func:`verified_capabilities`), or with ``PROMPTSEG_KERNELS=1``
   (``PROMPTSEG_KERNELS=0`` keeps them off even there). ``backend="kernels"`` opts a model in.
   :func:`kernel_policy` says which is in force on a device and why (``promptseg info`` prints it).
4. A kernel that failed its self-check on this device: the reference.
5. Otherwise the kernel, checked first: on its first call in the process on each (device, dtype),
   it is run on a small random case of the call's own shapes (:mod:`promptseg.ops.self_check`) and
   compared with its reference. On any mismatch (or error) it is disabled on that device for the
   rest of the process, with one loud :class:`KernelCheckWarning` naming the op, the device and the
   error, and the reference runs instead. :func:`kernel_checks` lists the checks made.

Inside ``torch.compile`` tracing or a CUDA-graph capture nothing can be checked: a kernel runs there
only after it passed its check in an eager call of this process (else the reference is traced).
Tracing with fake tensors computes no values, so the kernel's fake runs there unchecked.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import warnings
import weakref
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

DISABLE_ENV = "PROMPTSEG_DISABLE_KERNELS"
KERNELS_ENV = "PROMPTSEG_KERNELS"
RECORDS_ENV = "PROMPTSEG_GPU_RECORDS"
RECORDS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
"""Where the committed GPU records are read (a source checkout); ``PROMPTSEG_GPU_RECORDS`` names another folder."""
BACKENDS = ("auto", "reference", "kernels")
"""``auto``: a kernel where one applies and is in force by default on the device (see the module);
``reference``: always the reference; ``kernels``: a kernel wherever one applies (opted in)."""
_TRUE, _FALSE = ("1", "true", "TRUE", "yes"), ("0", "false", "FALSE", "no")

OP_NAMES = ("vit_attention", "token_attention", "gathered_token_attention", "mask_postprocess")
"""Every op whose schema csrc/module.cpp defines under ``torch.ops.promptseg``."""


class KernelCheckWarning(RuntimeWarning):
    """A CUDA kernel disagreed with its reference on its self-check and was disabled (the reference runs)."""


@dataclass(frozen=True)
class KernelPolicy:
    """Whether the ``auto`` backend runs the kernels on a device, and why.

    Attributes:
        by_default: the kernels run under ``backend="auto"`` (they still pass a self-check first).
        reason: why, in words.
    """

    by_default: bool
    reason: str


@dataclass(frozen=True)
class KernelCheck:
    """One self-check of a kernel (:func:`kernel_checks`).

    Attributes:
        op: the op's name. device: e.g. ``cuda:0``. dtype: the inputs' dtype.
        variant: the kernel's code path checked (e.g. windowed or global attention).
        passed: the kernel agreed with its reference. problem: what differed, when it did not.
        seconds: the check's wall time (the kernel and the reference on the random case, and the comparison).
    """

    op: str
    device: str
    dtype: torch.dtype
    variant: Any
    passed: bool
    problem: Optional[str]
    seconds: float


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
    return os.environ.get(DISABLE_ENV, "0") not in _TRUE


def record_verifies(record: Mapping[str, Any]) -> bool:
    """Whether a GPU record (``tests/gpu/summarize.py``'s ``gpu_checks_<gpu>.json``) verifies the kernels
    on its device's compute capability: it names the capability, every check passed (``ok``), and the
    GPU tests ran complete with at least one passed and none failed or in error."""
    tests = record.get("tests") or {}
    totals = tests.get("totals") or {}
    return (
        isinstance(record.get("capability"), str)
        and record.get("ok") is True
        and tests.get("complete") is True
        and totals.get("passed", 0) > 0
        and totals.get("failed", 0) == 0
        and totals.get("error", 0) == 0
    )


def verified_capabilities() -> Mapping[str, str]:
    """Compute capability (``"9.0"``) -> the GPU record that verified the kernels there
    (:func:`record_verifies`), from ``gpu_checks_*.json`` in ``PROMPTSEG_GPU_RECORDS`` or
    :data:`RECORDS_DIR`; empty when there is none (then the kernels are opt-in everywhere)."""
    return _verified_in(os.environ.get(RECORDS_ENV) or str(RECORDS_DIR))


@lru_cache(maxsize=None)
def _verified_in(folder: str) -> Mapping[str, str]:
    verified = {}
    for path in sorted(Path(folder).glob("gpu_checks_*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record_verifies(record):
            verified[record["capability"]] = path.name
    return MappingProxyType(verified)


def kernel_policy(device: Optional[torch.device] = None) -> KernelPolicy:
    """Whether ``backend="auto"`` runs the kernels on ``device`` (default: the current CUDA device), and why."""
    if not extension_loaded():
        return KernelPolicy(False, "the CUDA extension was not built; every op runs its PyTorch reference")
    if not kernels_enabled():
        return KernelPolicy(False, f"{DISABLE_ENV}=1: every op runs its PyTorch reference")
    opted = os.environ.get(KERNELS_ENV, "")
    if opted in _TRUE:
        return KernelPolicy(True, f"opted in with {KERNELS_ENV}={opted} (each kernel is self-checked on first use)")
    if opted in _FALSE:
        return KernelPolicy(False, f"{KERNELS_ENV}={opted}: the PyTorch references run (backend='kernels' opts a model in)")
    if device is None:
        if not torch.cuda.is_available():
            return KernelPolicy(False, "no CUDA device")
        device = torch.device("cuda", torch.cuda.current_device())
    return _policy_for(str(device))


@lru_cache(maxsize=None)
def _capability(device: str) -> str:
    """``"9.0"``: the compute capability of a CUDA device (it does not change; asked once)."""
    major, minor = torch.cuda.get_device_capability(torch.device(device))
    return f"{major}.{minor}"


def _policy_for(device: str) -> KernelPolicy:
    """The record-based half of :func:`kernel_policy` for a CUDA device."""
    capability = _capability(device)
    record = verified_capabilities().get(capability)
    if record is not None:
        return KernelPolicy(True, f"a GPU record ({record}) verified them on compute capability {capability}")
    return KernelPolicy(
        False,
        f"opt-in: no committed GPU record (benchmarks/results/gpu_checks_<gpu>.json with every test passing) covers "
        f"compute capability {capability} yet; set {KERNELS_ENV}=1 or build_sam(..., backend='kernels') to use them",
    )


def _auto_runs_kernels(device: torch.device) -> bool:
    """Whether ``backend="auto"`` runs the kernels on ``device`` (the environment first: no device query)."""
    opted = os.environ.get(KERNELS_ENV, "")
    if opted in _TRUE or opted in _FALSE:
        return opted in _TRUE
    if device.type != "cuda":
        return False
    return _policy_for(str(device)).by_default


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


def module_backend(module: nn.Module) -> str:
    """The backend of ``module``'s op calls: ``reference`` when any op-calling submodule was set to it,
    ``kernels`` when all were, else ``auto``.

    Decoders ask this on every call, so the op-calling submodules of ``module`` are listed once and
    kept until any module anywhere registers a submodule (:func:`op_calling_modules`); their
    ``backend`` attributes are read afresh each time (a walk of vit_tiny's 178 modules cost ~0.4 ms,
    the reads ~2 us)."""
    backends = {submodule.backend for submodule in op_calling_modules(module)}
    if "reference" in backends:
        return "reference"
    return "kernels" if backends == {"kernels"} else "auto"


_STRUCTURE = [0]
"""Bumped whenever any module registers a submodule (``nn.Module.__setattr__`` / ``register_module``):
the listed submodules of :func:`op_calling_modules` are stale once it changes."""
_OP_CALLING: "weakref.WeakKeyDictionary[nn.Module, tuple[int, tuple[nn.Module, ...]]]" = weakref.WeakKeyDictionary()


def _count_registration(module: nn.Module, name: str, submodule: Optional[nn.Module]) -> None:
    _STRUCTURE[0] += 1


nn.modules.module.register_module_module_registration_hook(_count_registration)


def op_calling_modules(module: nn.Module) -> tuple[nn.Module, ...]:
    """The submodules of ``module`` (itself included) that carry a ``backend`` attribute, listed again
    only after a submodule was registered somewhere since the last listing. (A submodule removed by
    ``del`` or written into ``_modules`` directly is not noticed; promptseg does neither.)"""
    cached = _OP_CALLING.get(module)
    if cached is not None and cached[0] == _STRUCTURE[0]:
        return cached[1]
    listed = tuple(submodule for submodule in module.modules() if hasattr(submodule, "backend"))
    _OP_CALLING[module] = (_STRUCTURE[0], listed)
    return listed


# ------------------------------------------------------------------ the self-check's state
_CHECKS: dict[tuple[str, str, torch.dtype, Any], KernelCheck] = {}
_DISABLED: set[tuple[str, str]] = set()


def kernel_checks() -> tuple[KernelCheck, ...]:
    """The self-checks made in this process, in order."""
    return tuple(_CHECKS.values())


def reset_kernel_checks() -> None:
    """Forget the self-checks made (and the kernels they disabled): the next call checks again (tests)."""
    _CHECKS.clear()
    _DISABLED.clear()


def _device_supported(tensor: torch.Tensor) -> bool:
    """Whether a kernel takes ``tensor``: a CUDA bf16/fp16 tensor (tests swap this to try a fake kernel on the CPU)."""
    return tensor.is_cuda and tensor.dtype in (torch.bfloat16, torch.float16)


def _registered_kernel(op_name: str) -> Callable[..., Any]:
    """The extension's kernel ``torch.ops.promptseg.<op_name>`` (tests swap this for a fake one)."""
    return getattr(torch.ops.promptseg, op_name)


def kernel_for(op_name: str, *tensors: torch.Tensor, backend: str = "auto") -> Optional[Callable[..., Any]]:
    """The kernel of ``op_name`` if it may run on ``tensors`` (see the module for the rule), else None.

    The kernel handed out takes the kernel's arguments; on its first call in the process on each
    (device, dtype) it is checked against its reference first (and replaced by the reference when
    it fails).
    """
    if check_backend(backend) == "reference" or not (kernels_enabled() and op_built(op_name)):
        return None
    if not tensors or not all(_device_supported(tensor) for tensor in tensors):
        return None
    first = tensors[0]
    if backend == "auto" and not _auto_runs_kernels(first.device):
        return None
    device = str(first.device)
    if (op_name, device) in _DISABLED:
        return None
    kernel = _registered_kernel(op_name)
    if _is_fake(first):
        return kernel  # shapes only: the kernel's fake runs, nothing to check
    if _tracing_or_capturing(first):
        checked = [c for c in _CHECKS.values() if (c.op, c.device, c.dtype) == (op_name, device, first.dtype)]
        return kernel if checked and all(c.passed for c in checked) else None
    return _CheckedKernel(op_name, kernel)


def kernel_available(op_name: str, *tensors: torch.Tensor, backend: str = "auto") -> bool:
    """True when :func:`kernel_for` would hand the op ``op_name`` a kernel for ``tensors``.

    The check of dispatch itself (backend, extension, the environment, the device's policy, CUDA
    bf16/fp16 tensors, no failed self-check); an op may still run its reference for shapes its
    kernel does not take.
    """
    return kernel_for(op_name, *tensors, backend=backend) is not None


class _CheckedKernel:
    """A kernel that is checked against its reference before its first real call on a (device, dtype,
    variant): the variant is the kernel's code path (:func:`promptseg.ops.self_check.variant_of`)."""

    def __init__(self, op_name: str, kernel: Callable[..., Any]) -> None:
        self.op_name, self.kernel = op_name, kernel

    def __call__(self, *args: Any) -> Any:
        from promptseg.ops import self_check

        first = args[0]
        key = (self.op_name, str(first.device), first.dtype, self_check.variant_of(self.op_name, args))
        check = _CHECKS.get(key)
        if check is None:
            check = _check(self.op_name, self.kernel, args, key)
        if check.passed and (self.op_name, key[1]) not in _DISABLED:
            return self.kernel(*args)
        return self_check.reference_of(self.op_name)(*args)


def _check(op_name: str, kernel: Callable[..., Any], args: tuple, key: tuple[str, str, torch.dtype, Any]) -> KernelCheck:
    """Run the self-check of ``op_name`` on a case of ``args``' shapes; record it; on failure disable the
    op on the device and warn once."""
    from promptseg.ops.self_check import run_self_check

    started = time.perf_counter()
    problem = run_self_check(op_name, kernel, args)
    check = KernelCheck(op_name, key[1], key[2], key[3], problem is None, problem, time.perf_counter() - started)
    _CHECKS[key] = check
    if problem is not None:
        _DISABLED.add((op_name, key[1]))
        warnings.warn(
            KernelCheckWarning(
                f"the CUDA kernel promptseg::{op_name} FAILED its self-check on {_device_name(args[0].device)} "
                f"({str(key[2]).replace('torch.', '')}): {problem}. It is disabled for the rest of this process and the "
                "PyTorch reference runs instead (correct, slower). Please report this with the output of `promptseg info`."
            ),
            stacklevel=4,
        )
    return check


def _device_name(device: torch.device) -> str:
    if device.type != "cuda":
        return str(device)
    try:
        major, minor = torch.cuda.get_device_capability(device)
        return f"{device} ({torch.cuda.get_device_name(device)}, compute capability {major}.{minor})"
    except (RuntimeError, AssertionError):  # pragma: no cover - a device that vanished
        return str(device)


def _is_fake(tensor: torch.Tensor) -> bool:
    if tensor.device.type == "meta":
        return True
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(tensor)


def _tracing_or_capturing(tensor: torch.Tensor) -> bool:
    """torch.compile tracing, or a CUDA graph being captured on the current stream."""
    if torch.compiler.is_compiling():
        return True
    return tensor.is_cuda and torch.cuda.is_current_stream_capturing()
