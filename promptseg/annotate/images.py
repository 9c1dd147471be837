"""The image folder behind the annotation server: which files it may serve, and their sizes.

Files are listed and read by :mod:`promptseg.io` (the rules every command follows): the listing
reads headers only, and pixels are read with the EXIF orientation applied, as browsers show them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from promptseg.io import image_size, list_images as list_image_files, read_image

BROWSER_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
                 ".webp": "image/webp"}


@dataclass(frozen=True)
class ImageFile:
    """One image of the folder. ``width``/``height`` are those of the image as displayed (EXIF orientation applied)."""

    file_name: str
    path: Path
    width: int
    height: int

    def pixels(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, EXIF orientation applied (as browsers show it); see :func:`promptseg.io.read_image`."""
        return read_image(self.path)

    def browser_bytes(self) -> tuple[bytes, str]:
        """The file's bytes and media type; formats browsers cannot show (TIFF) are converted to PNG."""
        media_type = BROWSER_TYPES.get(self.path.suffix.lower())
        if media_type is not None:
            return self.path.read_bytes(), media_type
        buffer = io.BytesIO()
        Image.fromarray(self.pixels()).save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"


def list_images(folder: Path) -> list[ImageFile]:
    """The images directly inside ``folder``, sorted by name, with their displayed sizes (from the headers).
    Files (or links) resolving outside it are left out.

    Raises:
        FileNotFoundError: no such folder. ValueError: no image in it.
        promptseg.errors.ImageReadError: a file that is not a readable image.
    """
    images = []
    for path in list_image_files(folder, allow_file=False, contained=True):
        resolved = path.resolve()
        width, height = image_size(resolved)
        images.append(ImageFile(path.name, resolved, width, height))
    return images
