"""COCO masks for the annotation server, through pycocotools: encoding predicted masks, and checking the
RLEs and polygons that clients send before pycocotools reads them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from promptseg.amg.rle import column_major_counts
from promptseg.annotate.errors import bad_request

CocoRle = dict[str, Any]  # {"size": [H, W], "counts": str}
_FIRST_CHAR, _LAST_CHAR = 48, 48 + 63  # pycocotools writes 6-bit groups offset by 48


def mask_utils():
    """pycocotools.mask, or a clear error naming the extra that installs it."""
    try:
        from pycocotools import mask
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            'the annotation server needs pycocotools: pip install "promptseg[annotate]"'
        ) from error
    return mask


def encode_masks(masks: np.ndarray) -> list[CocoRle]:
    """(M, H, W) bool masks -> M COCO RLEs with ``counts`` as a str (JSON-ready).

    The run lengths come from the row-major masks as they are (no Fortran-order copy, which took most
    of a click's service time on a full-size photo); pycocotools compresses them."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (M, H, W), got shape {masks.shape}")
    height, width = masks.shape[1:]
    utils = mask_utils()
    return [
        _jsonable(utils.frPyObjects({"size": [height, width], "counts": column_major_counts(mask).tolist()}, height, width))
        for mask in masks.astype(bool, copy=False)
    ]


def decode_mask(rle: CocoRle) -> np.ndarray:
    """(H, W) bool mask of a checked COCO RLE."""
    return mask_utils().decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def area_and_bbox(rle: CocoRle) -> tuple[int, list[float]]:
    """Pixel count and XYWH box of a checked COCO RLE."""
    coco = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    utils = mask_utils()
    return int(utils.area(coco)), [float(v) for v in utils.toBbox(coco)]


def iou_matrix(first: list[CocoRle], second: list[CocoRle]) -> np.ndarray:
    """(len(first), len(second)) mask IoU."""
    if not first or not second:
        return np.zeros((len(first), len(second)))
    as_bytes = [[{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in group] for group in (first, second)]
    return np.asarray(mask_utils().iou(as_bytes[0], as_bytes[1], [0] * len(second)))


def checked_rle(value: Any, height: int, width: int) -> CocoRle:
    """A client's RLE (compressed string or uncompressed count list) as a compressed COCO RLE of an H x W image.

    Raises ApiError (400) naming what is wrong: the size, the counts' type, characters
    outside pycocotools' alphabet, or runs that do not add up to H * W pixels.
    """
    if not isinstance(value, dict) or "size" not in value or "counts" not in value:
        raise bad_request(f'rle must be an object {{"size": [H, W], "counts": ...}}, got {_describe(value)}')
    size = value["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise bad_request(f"rle size must be [H, W] integers, got {size!r}")
    if list(size) != [height, width]:
        raise bad_request(f"rle size {list(size)} does not match the image's [H, W] = {[height, width]}")
    counts = value["counts"]
    if isinstance(counts, list):
        if not all(_is_int(c) and c >= 0 for c in counts):
            raise bad_request("rle counts list must hold non-negative integers")
        _check_total(sum(counts), height, width)
        compressed = mask_utils().frPyObjects({"size": [height, width], "counts": counts}, height, width)
        return _jsonable(compressed)
    if not isinstance(counts, str):
        raise bad_request(f"rle counts must be a COCO string or a list of integers, got {type(counts).__name__}")
    _check_total(sum(_string_counts(counts)), height, width)
    return {"size": [height, width], "counts": counts}


def polygon_rle(value: Any, height: int, width: int) -> CocoRle:
    """A COCO polygon (a list of [x0, y0, x1, y1, ...] rings in pixels) rasterised into a COCO RLE."""
    if not isinstance(value, list) or not value:
        raise bad_request(f"polygon must be a non-empty list of [x0, y0, x1, y1, ...] rings, got {_describe(value)}")
    rings = []
    for index, ring in enumerate(value):
        if not isinstance(ring, list) or len(ring) < 6 or len(ring) % 2:
            raise bad_request(f"polygon ring {index} must list at least 3 (x, y) pairs as [x0, y0, x1, y1, ...]")
        if not all(_is_number(v) for v in ring):
            raise bad_request(f"polygon ring {index} must hold finite numbers")
        rings.append([float(v) for v in ring])
    utils = mask_utils()
    return _jsonable(utils.merge(utils.frPyObjects(rings, height, width)))


def _string_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO counts string (pycocotools' rleFrString), checked."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise bad_request("rle counts string ends in the middle of a number")
            code = ord(text[position])
            if not _FIRST_CHAR <= code <= _LAST_CHAR:
                raise bad_request(f"rle counts string holds {text[position]!r}, outside COCO's alphabet '0'..'o'")
            code -= _FIRST_CHAR
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise bad_request(f"rle counts string decodes to a negative run ({value}) at run {len(counts)}")
        counts.append(value)
    return counts


def _check_total(total: int, height: int, width: int) -> None:
    if total != height * width:
        raise bad_request(f"rle runs cover {total} pixels, the image has H * W = {height * width}")


def _jsonable(rle: dict) -> CocoRle:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
