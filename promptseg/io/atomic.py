"""Atomic writes: a reader (or a resumed run, or a second server) sees the old file or the whole new one.

Each write goes to a temporary file beside the target, named ``<name>.promptseg-<pid>-<hex>.tmp``;
it is flushed to disk, given the target's permission bits when the target exists (so a save never
resets a file's mode), and renamed over the target; then the folder is flushed, so the rename
survives a power cut. A write that fails removes its temporary file. A process killed mid-write
leaves its temporary file behind: :func:`remove_orphaned_temps` removes those whose writer is gone.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union


PathLike = Union[str, "os.PathLike[str]"]
TEMP_TAG = "promptseg"
_TEMP_PATTERN = re.compile(rf"\.{TEMP_TAG}-(\d+)-[0-9a-f]+\.tmp$")


def temp_name(name: str) -> str:
    """A fresh temporary file name for the output file ``name``, in the recognisable form of this module."""
    return f"{name}.{TEMP_TAG}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """The path of a new, empty temporary file for any writer to fill (``torch.save``, safetensors, ...);
    when the block ends it replaces ``path`` atomically (missing folders are made first).

    Example::

        with atomic_path(out / "model.pth") as temporary:
            torch.save(state, temporary)

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.with_name(temp_name(path.name))
        try:
            # O_EXCL: a fresh file; mode 0o666 less the umask, as an ordinary new file gets.
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
            break
        except FileExistsError:  # pragma: no cover - a 32-bit random name taken already
            continue
    try:
        yield temporary
        _flush(temporary)
        try:
            os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _flush_folder(path.parent)


def write_bytes_atomically(path: PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (see the module)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(payload)


def write_text_atomically(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: PathLike, payload: Any) -> None:
    """Write ``payload`` as JSON (``json.dumps`` with its defaults) to ``path`` atomically."""
    write_bytes_atomically(path, json.dumps(payload).encode("utf-8"))


def remove_orphaned_temps(output: PathLike) -> list[Path]:
    """Remove the temporary files that killed writes of the file ``output`` left (their process is gone).

    Temporary files of a running process (this one included) are kept: it may still rename them.
    Returns the removed files.
    """
    output = Path(output)
    return _remove_orphans(output.parent, output.name)


def remove_orphaned_temps_in(folder: PathLike) -> list[Path]:
    """:func:`remove_orphaned_temps` for every output file directly inside ``folder``."""
    return _remove_orphans(Path(folder), None)


def _remove_orphans(folder: Path, name: Union[str, None]) -> list[Path]:
    if not folder.is_dir():
        return []
    removed = []
    for candidate in folder.iterdir():
        match = _TEMP_PATTERN.search(candidate.name)
        if match is None or (name is not None and candidate.name[: match.start()] != name):
            continue
        if _running(int(match.group(1))) or not candidate.is_file():
            continue
        candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return sorted(removed)


def _running(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows, os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OSError, OverflowError):  # pragma: no cover - e.g. signals unsupported
        return False
    return True


def _flush(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _flush_folder(folder: Path) -> None:
    try:
        _flush(folder)
    except OSError:  # pragma: no cover - folders cannot be opened on Windows
        pass
