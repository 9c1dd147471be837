"""What ``SOURCE`` names: a folder, an image, a file list, a glob, a list of paths, or remote URIs.

Local sources resolve to a sorted list of image files before the run (so done images are skipped
before anything is read); remote URIs (``s3://``, ``gs://``, ...) pass through unchanged to Ray
Data, which lists and reads them.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence, Union

from promptseg.io import IMAGE_SUFFIXES, is_image_name

SourceLike = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class ImageSource:
    """Resolved images.

    Attributes:
        paths: local image files, sorted by file name; or the remote URIs as given.
        remote: True when ``paths`` are remote URIs for Ray Data to list and read.
    """

    paths: tuple[str, ...]
    remote: bool


def is_remote(path: str) -> bool:
    """A URI with a scheme other than file:// (s3://, gs://, abfs://, ...)."""
    scheme, separator, _ = str(path).partition("://")
    return bool(separator) and scheme.lower() != "file" and "/" not in scheme


def file_name(path: str) -> str:
    """The key of an image's outputs: its file name without folders."""
    return PurePosixPath(str(path).replace("\\", "/")).name


def resolve_source(source: SourceLike) -> ImageSource:
    """Resolve ``source`` to the images to segment.

    Args:
        source: a folder (its images, not recursive), an image file, a text file listing one
            path or URI per line (relative paths are relative to the list's folder; blank lines and
            lines starting with '#' are skipped), a glob (``**`` recurses), a sequence of paths, or
            remote URIs.
    Raises:
        FileNotFoundError: nothing there. ValueError: no images, local and remote mixed, or two
            images with the same file name (their outputs would collide).
    """
    if isinstance(source, (str, os.PathLike)):
        items = _expand(str(source))
    elif isinstance(source, Sequence) and not isinstance(source, (bytes, bytearray)):
        items = [item for entry in source for item in _expand(str(entry))]
    else:
        raise TypeError(f"source must be a path, a glob, a URI or a sequence of them, got {type(source).__name__}")
    if not items:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}")
    remote = [is_remote(item) for item in items]
    if any(remote) and not all(remote):
        raise ValueError("source mixes remote URIs and local paths; run them separately")
    if all(remote):
        return ImageSource(tuple(items), remote=True)
    items = sorted(dict.fromkeys(items), key=lambda item: (file_name(item), item))
    seen: dict[str, str] = {}
    for item in items:
        name = file_name(item)
        if name in seen:
            raise ValueError(
                f"two images share the file name {name!r} ({seen[name]} and {item}); "
                "outputs are keyed by file name, so run them into different --out folders"
            )
        seen[name] = item
    return ImageSource(tuple(items), remote=False)


def _expand(entry: str) -> list[str]:
    if is_remote(entry):
        return [entry]
    if entry.startswith("file://"):
        entry = entry[len("file://"):]
    path = Path(entry)
    if path.is_dir():
        return [str(p) for p in path.iterdir() if p.is_file() and is_image_name(p.name)]
    if path.is_file():
        return [str(path)] if is_image_name(path.name) else _read_list(path)
    if any(character in entry for character in GLOB_CHARACTERS):
        return [p for p in glob.glob(entry, recursive=True) if os.path.isfile(p) and is_image_name(p)]
    raise FileNotFoundError(f"image, folder, file list or glob not found: {entry}")


def _read_list(path: Path) -> list[str]:
    """The images a file list names, one per line."""
    items = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if is_remote(line):
            items.append(line)
            continue
        item = Path(line) if Path(line).is_absolute() else path.parent / line
        items.append(str(item))
    if not items:
        raise ValueError(f"the file list {path} names no images")
    return items
