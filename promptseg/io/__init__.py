"""File handling, on the bottom floor: every image read, every atomic write, run records and resume,
the COCO RLE codec and COCO instance files.

- :mod:`~promptseg.io.images`: :func:`read_image`, :func:`decode_image`, :func:`image_size` (EXIF
  orientation, pixel limit, truncation, one :class:`~promptseg.errors.ImageReadError`).
- :mod:`~promptseg.io.listing`: :data:`IMAGE_SUFFIXES`, :func:`list_images`.
- :mod:`~promptseg.io.atomic`: :func:`write_bytes_atomically` (text, JSON, :func:`atomic_path` for
  any writer), :func:`remove_orphaned_temps`.
- :mod:`~promptseg.io.runs`: :class:`RunRecords` (records, resume, ``failures.jsonl``).
- :mod:`~promptseg.io.rle`: the COCO RLE format.
- :mod:`~promptseg.io.coco`: :class:`CocoCollection` (a COCO dataset and results).

Imports nothing from promptseg but :mod:`promptseg.errors`.
"""

from promptseg.io.atomic import (
    atomic_path,
    remove_orphaned_temps,
    remove_orphaned_temps_in,
    write_bytes_atomically,
    write_json_atomically,
    write_text_atomically,
)
from promptseg.io.coco import OBJECT_CATEGORY, CocoCollection
from promptseg.io.images import (
    DEFAULT_MAX_PIXELS,
    ImageSize,
    decode_image,
    default_max_pixels,
    image_size,
    read_image,
)
from promptseg.io.listing import IMAGE_SUFFIXES, is_image_name, list_images
from promptseg.io.rle import CocoRle, UncompressedRle
from promptseg.io.runs import FAILURES, Failure, ResumePlan, RunRecords, error_text, plan_resume

__all__ = [
    "DEFAULT_MAX_PIXELS", "FAILURES", "IMAGE_SUFFIXES", "OBJECT_CATEGORY", "CocoCollection", "CocoRle", "Failure",
    "ImageSize", "ResumePlan", "RunRecords", "UncompressedRle", "atomic_path", "decode_image", "default_max_pixels",
    "error_text", "image_size", "is_image_name", "list_images", "plan_resume", "read_image", "remove_orphaned_temps",
    "remove_orphaned_temps_in", "write_bytes_atomically", "write_json_atomically", "write_text_atomically",
]
