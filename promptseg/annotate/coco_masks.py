"""COCO masks for the annotation server, through pycocotools: encoding predicted masks, checking the
RLEs that clients send (bounded in size) before pycocotools reads them, and rasterising checked
polygons (:mod:`promptseg.annotate.polygon_input` bounds and clips them). The RLE format and its checks
are :mod:`promptseg.io.rle`'s."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from promptseg.annotate.errors import bad_request
from promptseg.errors import RleError, optional_module
from promptseg.io.rle import CocoRle, column_major_counts, decompress_counts
from promptseg.io.rle import checked_rle as checked_coco_rle

FILL_RULES = ("union", "evenodd")
MAX_RLE_RUNS = 500_000
"""Runs an RLE from a client may have (a 10**6-run list is refused; a mask's runs grow with its outline)."""
MAX_RLE_CHARS = MAX_RLE_RUNS
"""Characters a compressed counts string from a client may have (each run takes at least one)."""


def mask_utils():
    """pycocotools.mask, or a clear error naming the extra that installs it."""
    return optional_module("pycocotools.mask", "the annotation server", 'pip install "promptseg[annotate]"')


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

    Raises ApiError (400) naming what is wrong: more than :data:`MAX_RLE_RUNS` runs (a string longer
    than :data:`MAX_RLE_CHARS`), and what :func:`promptseg.io.rle.checked_rle` checks: the size, the
    counts' type, characters outside pycocotools' alphabet, a run of no pixels (only the first run may
    be 0), or runs that do not add up to H * W pixels.
    """
    counts = value.get("counts") if isinstance(value, dict) else None
    if isinstance(counts, list) and len(counts) > MAX_RLE_RUNS:
        raise bad_request(f"rle counts may hold at most {MAX_RLE_RUNS} runs, got {len(counts)}")
    if isinstance(counts, str) and len(counts) > MAX_RLE_CHARS:
        raise bad_request(f"rle counts string may be at most {MAX_RLE_CHARS} characters long, got {len(counts)}")
    try:
        return checked_coco_rle(value, height, width)
    except RleError as error:
        raise bad_request(str(error)) from None


def polygon_rle(rings: Sequence[np.ndarray], height: int, width: int, fill_rule: str = "union") -> CocoRle:
    """The COCO RLE of checked rings (:func:`promptseg.annotate.polygon_input.checked_polygon`: (K, 2)
    (x, y) arrays inside the H x W image), rasterised by pycocotools.

    ``fill_rule`` "union": the rings united (as COCO reads a polygon list); "evenodd": a pixel is in
    when it is in an odd number of rings (so rings given for holes cut them out). No ring: an empty mask.
    """
    if fill_rule not in FILL_RULES:
        raise ValueError(f"fill_rule must be one of {list(FILL_RULES)}, got {fill_rule!r}")
    utils = mask_utils()
    if not rings:
        runs = [height * width]
    else:
        encoded = utils.frPyObjects([[float(v) for v in ring.reshape(-1)] for ring in rings], height, width)
        if fill_rule == "union":
            return _jsonable(utils.merge(encoded))
        runs = _odd_runs(encoded, height * width)
    return _jsonable(utils.frPyObjects({"size": [height, width], "counts": runs}, height, width))


def _odd_runs(encoded: list[dict], pixels: int) -> list[int]:
    """The runs of the pixels covered by an odd number of the given RLEs (their XOR).

    A mask is given by the positions (in column-major order) where its value flips; the XOR of masks
    flips where an odd number of them flip. Works on the runs, never on an H x W array per ring."""
    flips = [np.cumsum(decompress_counts(rle["counts"].decode("ascii")))[:-1] for rle in encoded]
    positions, times = np.unique(np.concatenate(flips), return_counts=True)
    odd = positions[times % 2 == 1]
    return np.diff(np.concatenate([[0], odd, [pixels]])).tolist()


def _jsonable(rle: dict) -> CocoRle:
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
