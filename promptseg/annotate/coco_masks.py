"""COCO masks for the annotation server, through pycocotools: encoding predicted masks, and checking the
RLEs and polygons that clients send before pycocotools reads them. The RLE format and its checks are
:mod:`promptseg.io.rle`'s."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from promptseg.annotate.errors import bad_request
from promptseg.errors import RleError
from promptseg.io.rle import CocoRle, column_major_counts
from promptseg.io.rle import checked_rle as checked_coco_rle


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

    Raises ApiError (400) naming what is wrong (:func:`promptseg.io.rle.checked_rle`): the size, the
    counts' type, characters outside pycocotools' alphabet, a run of no pixels, or runs that do not
    add up to H * W pixels.
    """
    try:
        return checked_coco_rle(value, height, width)
    except RleError as error:
        raise bad_request(str(error)) from None


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


def _jsonable(rle: dict) -> CocoRle:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
