"""The build stamp of ``promptseg._C``: which sources a compiled extension was built from.

``setup.py`` hashes the C++/CUDA sources under ``csrc/`` and ``setup.py`` itself
(:func:`source_stamp`) and compiles the hash into the library, after a marker
(:data:`STAMP_MARKER`), so that it can be read back two ways: from the loaded module
(``promptseg._C.build_stamp()``) and from the ``.so`` file's bytes without loading it
(:func:`file_stamp`, for a build that does not load with the torch at hand). A build whose
stamp differs from the sources' is stale: tests/gpu/session.sh rebuilds it instead of reusing it.

Standard library only: setup.py loads this file by path, before promptseg (or torch) can be imported.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Optional

STAMP_MARKER = b"promptseg-build-stamp="
"""What precedes the stamp in the compiled library's bytes (csrc/module.cpp)."""

SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cu", ".cuh", ".h", ".hpp")
"""Files under ``csrc/`` that the stamp covers (what the compiler reads; not the README)."""

UNSTAMPED = "unknown"
"""The stamp of a library compiled without setup.py's generated header (csrc/module.cpp)."""

_STAMP_IN_FILE = re.compile(re.escape(STAMP_MARKER) + rb"([0-9a-f]{64}|" + UNSTAMPED.encode() + rb")")


def checkout_root() -> Optional[Path]:
    """The source checkout holding this package (with ``csrc/`` and ``setup.py``), or None for an
    installed copy without its sources."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "csrc").is_dir() and (root / "setup.py").is_file() else None


def stamp_inputs(root: Path) -> list[Path]:
    """The files the stamp covers, in hashing order: the sources under ``root/csrc`` (by relative
    path), then ``root/setup.py``."""
    csrc = root / "csrc"
    sources = sorted(
        (path for path in csrc.rglob("*") if path.is_file() and path.suffix in SOURCE_SUFFIXES),
        key=lambda path: path.relative_to(root).as_posix(),
    )
    return [*sources, root / "setup.py"]


def source_stamp(root: Optional[Path] = None) -> Optional[str]:
    """sha256 (64 hex digits) over each of :func:`stamp_inputs`' relative path, size and bytes;
    None when ``root`` (default: :func:`checkout_root`) holds no ``csrc/`` or ``setup.py``."""
    root = checkout_root() if root is None else Path(root)
    if root is None or not (root / "csrc").is_dir() or not (root / "setup.py").is_file():
        return None
    digest = hashlib.sha256()
    for path in stamp_inputs(root):
        data = path.read_bytes()
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def file_stamp(library: Path) -> Optional[str]:
    """The stamp compiled into the library file ``library`` (read from its bytes, not loaded):
    64 hex digits, :data:`UNSTAMPED` for a build without setup.py's header, None for a file
    without the marker (built before stamps) or no file."""
    try:
        data = Path(library).read_bytes()
    except OSError:
        return None
    match = _STAMP_IN_FILE.search(data)
    return match.group(1).decode() if match else None


def build_stamp_status(built: Optional[str], root: Optional[Path] = None) -> str:
    """How the stamp ``built`` compares with the sources under ``root`` (default: this checkout):
    ``matches``, ``stale``, ``unstamped`` (no stamp in the build) or ``no sources`` (an installed
    copy: nothing to compare with)."""
    if built is None or built == UNSTAMPED:
        return "unstamped"
    current = source_stamp(root)
    if current is None:
        return "no sources"
    return "matches" if built == current else "stale"
