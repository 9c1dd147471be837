"""The COCO run-length encoding of binary masks: its types, its string alphabet, encoding, decoding and checks.

A mask of size (H, W) is read in column-major (Fortran) order. Its *counts* alternate runs of 0s
and 1s, starting with 0s: a leading count of 0 when the first pixel is set; every other run is
positive, and the runs add up to H * W. The *uncompressed* form lists the counts; the *COCO*
(compressed) form is the ASCII string pycocotools writes: each count (from the third on, minus the
count two before it) in 5-bit groups, low bits first, with a continuation bit (0x20) and a sign bit
(0x10) in the last group, offset by 48 (characters '0' to 'o').

Plain Python and numpy (no pycocotools): :func:`encode_mask` / :func:`decode_mask` for one mask,
:func:`compress_counts` / :func:`decompress_counts` between the two forms, :func:`check_counts`
and :func:`checked_rle` for RLEs from outside. The batched, on-device encoder of many masks is
:func:`promptseg.amg.rle.encode_rle`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from promptseg.errors import RleError

UncompressedRle = dict[str, Any]  # {"size": [H, W], "counts": [int, ...]}
CocoRle = dict[str, Any]  # {"size": [H, W], "counts": str}

CHAR_OFFSET = 48  # '0'
BITS_PER_CHAR = 5
CONTINUE_BIT = 0x20
SIGN_BIT = 0x10
VALUE_BITS = 0x1F
LAST_CHAR = CHAR_OFFSET + 63  # 'o'


def compress_counts(counts: Sequence[int]) -> str:
    """The COCO string of run lengths (pycocotools' ``rleToString``)."""
    characters = []
    for index, count in enumerate(counts):
        value = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            group = value & VALUE_BITS
            value >>= BITS_PER_CHAR
            more = value != -1 if group & SIGN_BIT else value != 0
            characters.append(chr(group + (CONTINUE_BIT if more else 0) + CHAR_OFFSET))
    return "".join(characters)


def decompress_counts(text: str) -> list[int]:
    """The run lengths of a COCO counts string (pycocotools' ``rleFrString``).

    Raises:
        RleError: a character outside the alphabet '0'..'o', or a string that ends inside a number.
            (Whether the runs fit a mask is :func:`check_counts`' question.)
    """
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise RleError("rle counts string ends in the middle of a number")
            code = ord(text[position])
            if not CHAR_OFFSET <= code <= LAST_CHAR:
                raise RleError(f"rle counts string holds {text[position]!r}, outside COCO's alphabet '0'..'o'")
            code -= CHAR_OFFSET
            value |= (code & VALUE_BITS) << shift
            more = bool(code & CONTINUE_BIT)
            position += 1
            shift += BITS_PER_CHAR
            if not more and code & SIGN_BIT:
                value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def check_counts(counts: Sequence[Any], height: int, width: int) -> None:
    """Check that ``counts`` are the runs of an (H, W) mask.

    Raises:
        RleError: a count that is not an integer, a negative run, a zero run after the first (a
            run of no pixels: any mask is encoded without one), or runs that do not add up to H * W.
    """
    for index, count in enumerate(counts):
        if not _is_int(count) or count < 0 or (count == 0 and index > 0):
            raise RleError(
                "rle counts must be non-negative integers, and only the first may be 0 "
                f"(a run of no pixels); got {count!r} at run {index}"
            )
    total = sum(counts)
    if total != height * width:
        raise RleError(f"rle runs cover {total} pixels, the image has H * W = {height * width}")


def checked_rle(value: Any, height: int, width: int) -> CocoRle:
    """An RLE from outside (COCO string or uncompressed counts) as a checked COCO RLE of an (H, W) mask.

    Raises:
        RleError: naming what is wrong: the object's shape, the size, the counts' type, characters
            outside the alphabet, or runs that are not those of an (H, W) mask (:func:`check_counts`).
    """
    if not isinstance(value, dict) or "size" not in value or "counts" not in value:
        raise RleError(f'rle must be an object {{"size": [H, W], "counts": ...}}, got {_describe(value)}')
    size = value["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise RleError(f"rle size must be [H, W] integers, got {size!r}")
    if list(size) != [height, width]:
        raise RleError(f"rle size {list(size)} does not match the image's [H, W] = {[height, width]}")
    counts = value["counts"]
    if isinstance(counts, list):
        check_counts(counts, height, width)
        return {"size": [height, width], "counts": compress_counts(counts)}
    if not isinstance(counts, str):
        raise RleError(f"rle counts must be a COCO string or a list of integers, got {type(counts).__name__}")
    check_counts(decompress_counts(counts), height, width)
    return {"size": [height, width], "counts": counts}


def column_major_counts(mask: np.ndarray) -> np.ndarray:
    """The COCO run lengths of one (H, W) bool mask held in row-major (C) order, without transposing it.

    A run starts wherever a pixel differs from the one before it in column-major order: below a
    change between vertically adjacent pixels, or at the top of a column whose first pixel differs
    from the last pixel of the column before. Only those positions (about the mask's perimeter) are
    sorted, so the cost is a few passes over the pixels in memory order, where a transposed copy of
    a large mask is several times slower on a CPU. Returns (K,) int64 counts, starting with 0s.
    """
    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError(f"expected an (H, W) bool mask, got {mask.dtype} of shape {mask.shape}")
    height, width = mask.shape
    below = np.flatnonzero(mask[1:] != mask[:-1])
    row, column = np.divmod(below, width)
    column_tops = (np.flatnonzero(mask[0, 1:] != mask[-1, :-1]) + 1) * height
    starts = np.concatenate([[0] if mask[0, 0] else [], column * height + row + 1, column_tops]).astype(np.int64)
    starts.sort()
    return np.diff(np.concatenate([[0], starts, [height * width]]))


def encode_mask(mask: np.ndarray) -> CocoRle:
    """(H, W) bool mask -> its COCO RLE ``{"size": [H, W], "counts": str}``."""
    height, width = mask.shape
    return {"size": [height, width], "counts": compress_counts(column_major_counts(mask).tolist())}


def decode_mask(rle: CocoRle | UncompressedRle) -> np.ndarray:
    """(H, W) bool mask of a COCO RLE (string counts) or an uncompressed one (list counts), checked.

    Raises:
        RleError: as :func:`checked_rle`.
    """
    size = rle.get("size") if isinstance(rle, dict) else None
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise RleError(f"rle size must be [H, W] integers, got {size!r}")
    counts = rle["counts"]
    counts = decompress_counts(counts) if isinstance(counts, str) else counts
    check_counts(counts, *size)
    return rle_to_mask({"size": list(size), "counts": counts})


def rle_to_mask(rle: UncompressedRle) -> np.ndarray:
    """(H, W) bool mask of an uncompressed RLE (a transposed view of column-major data, as officially)."""
    height, width = rle["size"]
    values = np.arange(len(rle["counts"])) % 2 == 1
    return np.repeat(values, rle["counts"]).reshape(width, height).transpose()


def area_from_rle(rle: UncompressedRle) -> int:
    """Number of set pixels of an uncompressed RLE."""
    return sum(rle["counts"][1::2])


def coco_encode_rle(uncompressed_rle: UncompressedRle) -> CocoRle:
    """The compressed COCO form of one uncompressed RLE (no pycocotools needed)."""
    return {"size": list(uncompressed_rle["size"]), "counts": compress_counts(uncompressed_rle["counts"])}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
