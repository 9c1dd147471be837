"""Reading images: one reader for every command, the Ray worker, the datasets and the annotation server.

One rule for all of them:

- **Orientation.** The EXIF orientation (1-8; or the XMP ``tiff:Orientation`` when there is no
  EXIF one) is applied, as :func:`PIL.ImageOps.exif_transpose` and browsers do, so a phone photo
  taken upright is segmented upright. It is read from the header only (for a PNG, from the chunks
  before the pixel data), by :func:`read_image` and :func:`image_size` alike, so both agree.
- **Pixel limit.** An image whose header claims more than ``max_pixels`` pixels is refused before
  anything is decoded (default :data:`DEFAULT_MAX_PIXELS`, or the environment variable
  ``PROMPTSEG_MAX_IMAGE_PIXELS``). Pillow's own ``PIL.Image.MAX_IMAGE_PIXELS`` error limit applies
  too; raise it as well to read larger images.
- **Whole files only.** A truncated file is an error, never a partly grey image.
- **Formats.** JPEG (MPO too), PNG, BMP, TIFF, WebP and GIF (its first frame); other formats Pillow
  knows (EPS, which runs Ghostscript, among them) are not tried.
- **One error.** Anything unreadable raises :class:`promptseg.errors.ImageReadError` (a ValueError)
  naming the file and the problem; a missing file raises FileNotFoundError.
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Union

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from promptseg.errors import ImageReadError

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_MAX_PIXELS = 2**27
"""128 Mi pixels (e.g. 16384 x 8192; 384 MiB once decoded as RGB): a 108-megapixel phone photo passes."""
MAX_PIXELS_ENVIRONMENT = "PROMPTSEG_MAX_IMAGE_PIXELS"
FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")
"""The Pillow formats tried."""

# EXIF orientation -> the transposition that shows the image upright (ImageOps.exif_transpose's table).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = (5, 6, 7, 8)


class ImageSize(NamedTuple):
    """An image's size as displayed (EXIF orientation applied)."""

    width: int
    height: int


def default_max_pixels() -> int:
    """The pixel limit when none is given: ``PROMPTSEG_MAX_IMAGE_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`."""
    value = os.environ.get(MAX_PIXELS_ENVIRONMENT)
    if value is None or not value.strip():
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"{MAX_PIXELS_ENVIRONMENT} must be a positive integer (a number of pixels), got {value!r}")
    return limit


def read_image(path: PathLike, *, max_pixels: Optional[int] = None) -> np.ndarray:
    """The image file at ``path`` as (H, W, 3) uint8 RGB, upright (EXIF orientation applied).

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels than this (default :func:`default_max_pixels`).
    Returns:
        (H, W, 3) uint8, C-contiguous and writable; H and W as displayed.
    Raises:
        FileNotFoundError: no such file.
        ImageReadError: empty, not an image, corrupt, truncated, or over the pixel limit.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    return _decode(path, path, max_pixels)


def decode_image(data: bytes, name: str, *, max_pixels: Optional[int] = None) -> np.ndarray:
    """The image file held in ``data`` (its bytes) as (H, W, 3) uint8 RGB, under the rules of :func:`read_image`.

    Args:
        data: the whole file.
        name: what the error names (the file's path or URI).
        max_pixels: as :func:`read_image`.
    Raises:
        ImageReadError: as :func:`read_image`.
    """
    return _decode(io.BytesIO(bytes(data)), name, max_pixels)


def image_size(path: PathLike, *, max_pixels: Optional[int] = None) -> ImageSize:
    """(width, height) of the image file at ``path`` as displayed, read from its header (no pixel is decoded).

    Raises:
        FileNotFoundError: no such file.
        ImageReadError: empty, not an image, a corrupt header, or over the pixel limit (a truncated
            body is only found by :func:`read_image`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    with _open(path, path, max_pixels) as image:
        width, height = image.size
        return ImageSize(height, width) if _orientation(image) in _SWAPS_SIDES else ImageSize(width, height)


def _decode(source: Union[Path, io.BytesIO], name: object, max_pixels: Optional[int]) -> np.ndarray:
    with _open(source, name, max_pixels) as image:
        orientation = _orientation(image)
        try:
            image.load()
            upright = image.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else image
            rgb = upright if upright.mode == "RGB" else upright.convert("RGB")
            return np.array(rgb, dtype=np.uint8)
        except Image.DecompressionBombError as error:
            raise ImageReadError(name, _bomb_problem(error)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageReadError(name, f"corrupt or truncated image data ({_describe(error)})") from None


@contextmanager
def _open(source: Union[Path, io.BytesIO], name: object, max_pixels: Optional[int]) -> Iterator[Image.Image]:
    """The lazily opened image (header read, no pixel decoded), its size checked against the limit."""
    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    empty = source.stat().st_size == 0 if isinstance(source, Path) else not source.getbuffer().nbytes
    if empty:
        raise ImageReadError(name, "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # the pixel limit below is this module's; Pillow's warning is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageReadError(name, _bomb_problem(error)) from None
    except PermissionError as error:
        raise ImageReadError(name, f"the file cannot be opened ({error.strerror})") from None
    except UnidentifiedImageError:
        raise ImageReadError(
            name, f"not an image (Pillow cannot identify image file as one of {', '.join(FORMATS)})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(name, f"corrupt image header ({_describe(error)})") from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageReadError(name, f"the header gives an empty size {width}x{height}")
        if width * height > limit:
            raise ImageReadError(
                name,
                f"{width}x{height} = {width * height:,} pixels is over the limit of {limit:,} "
                f"(set {MAX_PIXELS_ENVIRONMENT} to raise it)",
            )
        yield image


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when absent, unreadable or out of range), from the header only.

    ``PngImageFile.getexif`` decodes the whole file to look for an EXIF chunk after the pixel data;
    the base method reads what the header holds, for every format, so listing a folder stays cheap
    and :func:`read_image` agrees with :func:`image_size`.
    """
    try:
        value = Image.Image.getexif(image).get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block is ignored, as browsers ignore it
        return 1
    return value if isinstance(value, int) and value in range(1, 9) else 1


def _bomb_problem(error: Exception) -> str:
    return (
        f"over Pillow's pixel limit ({error}); raise PIL.Image.MAX_IMAGE_PIXELS as well as "
        f"{MAX_PIXELS_ENVIRONMENT} to read it"
    )


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "..."
