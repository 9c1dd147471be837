"""The image folder behind the annotation server: which files it may serve, and their sizes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BROWSER_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
                 ".webp": "image/webp"}
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageFile:
    """One image of the folder. ``width``/``height`` are those of the image as displayed (EXIF orientation applied)."""

    file_name: str
    path: Path
    width: int
    height: int

    def pixels(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, EXIF orientation applied (as browsers show it)."""
        with Image.open(self.path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))

    def browser_bytes(self) -> tuple[bytes, str]:
        """The file's bytes and media type; formats browsers cannot show (TIFF) are converted to PNG."""
        media_type = BROWSER_TYPES.get(self.path.suffix.lower())
        if media_type is not None:
            return self.path.read_bytes(), media_type
        buffer = io.BytesIO()
        Image.fromarray(self.pixels()).save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"


def list_images(folder: Path) -> list[ImageFile]:
    """The images directly inside ``folder``, sorted by name. Files (or links) resolving outside it are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    root = folder.resolve()
    images = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        resolved = path.resolve()
        if resolved.parent != root:
            continue
        width, height = _displayed_size(resolved)
        images.append(ImageFile(path.name, resolved, width, height))
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    return images


def _displayed_size(path: Path) -> tuple[int, int]:
    """(width, height) read from the header, swapped when the EXIF orientation turns the image."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)
