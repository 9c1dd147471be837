"""The image folder behind the annotation server: which files it may serve, their sizes, and reading them
safely.

Files are listed and decoded by :mod:`promptseg.io` (the rules every command follows: pixel limit,
truncation, EXIF orientation applied as browsers show it). The listing reads headers only; a file whose
header cannot be read is listed as *unavailable* with the reason, and the server starts without it.

Every read checks again that the file is inside the folder: the name is resolved (links followed), the
result must be a file directly inside the folder, and it is opened without following a link (a link
swapped in between the check and the open is refused). The bytes read are the bytes decoded and served.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
import numpy as np
from PIL import Image

from promptseg.errors import ImageReadError
from promptseg.io import decode_image, image_size, list_images as list_image_files

BROWSER_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
                 ".webp": "image/webp"}


class OutsideFolderError(PermissionError):
    """An image name that now resolves outside the image folder (a link swapped in after start-up)."""


@dataclass(frozen=True)
class ImageFile:
    """One image of the folder: ``folder / file_name``. ``width``/``height`` are those of the image as
    displayed (EXIF orientation applied), read from its header when the folder was listed."""

    file_name: str
    folder: Path
    width: int
    height: int

    @property
    def path(self) -> Path:
        return self.folder / self.file_name

    def read_bytes(self) -> bytes:
        """The file's bytes, read only if its name still resolves to a file directly inside the folder.

        Raises:
            OutsideFolderError: the name resolves outside the folder, or to something other than a file.
            FileNotFoundError: the file is gone.
        """
        resolved = self.path.resolve()
        if resolved.parent != self.folder:
            raise OutsideFolderError(f"{self.file_name} now resolves outside the image folder; it is not read")
        try:
            descriptor = os.open(resolved, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            raise FileNotFoundError(f"image {self.file_name} is no longer in the image folder") from None
        except OSError as error:  # ELOOP: a link swapped in after the check
            raise OutsideFolderError(f"{self.file_name} cannot be opened inside the image folder ({error.strerror})") from None
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OutsideFolderError(f"{self.file_name} is not a regular file")
            return handle.read()

    def pixels(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, EXIF orientation applied (as browsers show it); see :func:`promptseg.io.decode_image`.

        Raises:
            ImageReadError: the file is not a readable image (corrupt, truncated, over the pixel limit).
            OutsideFolderError, FileNotFoundError: as :meth:`read_bytes`.
        """
        return decode_image(self.read_bytes(), self.file_name)

    def browser_bytes(self) -> tuple[bytes, str]:
        """The file's bytes and media type, once they have decoded whole (so a truncated or corrupt file
        is an error here, not a broken picture); formats browsers cannot show (TIFF) are converted to PNG.

        Raises:
            ImageReadError, OutsideFolderError, FileNotFoundError: as :meth:`pixels`.
        """
        content = self.read_bytes()
        pixels = decode_image(content, self.file_name)
        media_type = BROWSER_TYPES.get(Path(self.file_name).suffix.lower())
        if media_type is not None:
            return content, media_type
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"


@dataclass(frozen=True)
class UnavailableFile:
    """A file of the folder that cannot be served, and why (``reason``: the reader's message)."""

    file_name: str
    reason: str


def list_images(folder: Path) -> list[ImageFile]:
    """The readable images directly inside ``folder``, sorted by name (see :func:`scan_images`).

    Raises:
        FileNotFoundError: no such folder. ValueError: no image in it.
    """
    return scan_images(folder)[0]


def scan_images(folder: Path) -> tuple[list[ImageFile], list[UnavailableFile]]:
    """The images directly inside ``folder`` by name, with their displayed sizes read from the headers
    (no pixel is decoded), and the files whose headers cannot be read (empty, not an image, corrupt,
    over the pixel limit) with the reason. Files (or links) resolving outside the folder are left out.

    Raises:
        FileNotFoundError: no such folder. ValueError: no file with an image suffix in it.
    """
    root = Path(folder).resolve()
    readable, unavailable = [], []
    for path in list_image_files(folder, allow_file=False, contained=True):
        try:
            width, height = image_size(root / path.name)
        except (ImageReadError, OSError) as error:
            unavailable.append(UnavailableFile(path.name, problem(error)))
            continue
        readable.append(ImageFile(path.name, root, width, height))
    return readable, unavailable


def problem(error: BaseException) -> str:
    """What is wrong with a file, for the page: the reader's problem without the path."""
    if isinstance(error, ImageReadError):
        return error.problem
    if isinstance(error, OSError) and error.strerror and not isinstance(error, OutsideFolderError):
        return error.strerror
    return str(error) or type(error).__name__

