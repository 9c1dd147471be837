"""How the C allocator treats large blocks: a process-wide choice that the ``promptseg`` command makes.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves a block above its mmap
threshold (at most 32 MB) with freshly mapped pages and gives them back to the kernel when the block is
freed, so a forward pass that allocates the same large activations each time pays a page fault and the
zeroing of every page, every time. Measured on this project's CPU (2 threads, idle; benchmarks/NOTES.md,
CPU): vit_b's image encoder makes ~0.7 M page faults a forward in promptseg (7.6 s, 1.7 s of it system
time) and ~3.9 M in the official package (12.5 s, 9.3 s system time); with freed memory kept for reuse,
6.7 s and 7.2 s, with no page fault after the first forward.

:func:`keep_freed_memory` asks glibc to keep it: large blocks come from the heap (``M_MMAP_MAX`` 0) and
the heap's free top is not returned to the kernel (``M_TRIM_THRESHOLD`` at its largest). The arithmetic
is untouched. The cost: the process keeps the memory of its largest forward (vit_b: ~2-3 GB) until it
exits, and other libraries in it allocate the same way. So the library never does this on its own: the
``promptseg`` command does (``PROMPTSEG_MALLOC=default`` keeps glibc's defaults), and an application
calls :func:`keep_freed_memory` when that suits it.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Optional

MALLOC_ENV = "PROMPTSEG_MALLOC"
"""``keep`` (the ``promptseg`` command's default) or ``default`` (glibc's own policy)."""
MALLOC_CHOICES = ("keep", "default")

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1  # mallopt takes a C int
_applied: list[bool] = []


def _glibc() -> Optional[ctypes.CDLL]:
    """The running glibc, or None on another C library or system."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def applies_here() -> bool:
    """Whether :func:`keep_freed_memory` can apply in this process (Linux with glibc)."""
    return _glibc() is not None


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse, for the rest of the process (see the module).

    Returns:
        True where applied (Linux with glibc); False elsewhere, where nothing changes.
    """
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
    if applied:
        _applied.append(True)
    return applied


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` was applied in this process."""
    return bool(_applied)


def malloc_choice_from_env() -> str:
    """``PROMPTSEG_MALLOC`` (default ``keep``).

    Raises:
        ValueError: another value.
    """
    choice = os.environ.get(MALLOC_ENV, "keep").strip() or "keep"
    if choice not in MALLOC_CHOICES:
        raise ValueError(f"{MALLOC_ENV} must be one of {', '.join(MALLOC_CHOICES)}, got {choice!r}")
    return choice
