"""Which files are images: the suffixes every command, the Ray engine and the annotation server accept."""

from __future__ import annotations

from pathlib import Path

from promptseg.io.images import PathLike

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_name(name: str) -> bool:
    """Whether a file name (or path, or URI) ends in one of :data:`IMAGE_SUFFIXES`, in any case."""
    return str(name).lower().endswith(IMAGE_SUFFIXES)


def list_images(path: PathLike, *, allow_file: bool = True, contained: bool = False) -> list[Path]:
    """The image ``path`` itself (when ``allow_file``), or the images directly inside the folder ``path``, by name.

    Only names are looked at (no file is opened): a listing stays cheap, and an unreadable image
    is found when it is read.

    Args:
        path: an image file or a folder.
        allow_file: accept an image file for ``path``.
        contained: leave out the folder's files (or links) that resolve outside it.
    Returns:
        The images' paths as ``path / name`` (links not resolved), sorted by name.
    Raises:
        FileNotFoundError: ``path`` does not exist (or is a file where a folder is expected).
        ValueError: the folder holds no image.
    """
    path = Path(path)
    if allow_file and path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{'image or folder' if allow_file else 'image folder'} not found: {path}")
    root = path.resolve()
    images = sorted(
        p for p in path.iterdir()
        if is_image_name(p.name) and p.is_file() and (not contained or p.resolve().parent == root)
    )
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
    return images
