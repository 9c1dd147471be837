"""promptseg.io.rle, the one COCO RLE codec: round trips, pycocotools' strings, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptseg.amg.rle import encode_rle
from promptseg.errors import RleError
from promptseg.io.rle import (
    check_counts,
    checked_rle,
    column_major_counts,
    compress_counts,
    decode_mask,
    decompress_counts,
    encode_mask,
)


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    masks = [rng.random((17, 23)) > 0.5, np.zeros((8, 5), bool), np.ones((8, 5), bool)]
    blob = np.zeros((300, 200), bool)
    blob[40:260, 30:170] = True  # long runs: several characters per count
    blob[100:120, 50:60] = False
    corner = np.zeros((4, 4), bool)
    corner[0, 0] = True  # a first pixel set: the counts start with a 0 run
    return masks + [blob, corner]


@pytest.mark.parametrize("index", range(5))
def test_round_trip_and_the_batched_encoder_agree(index):
    mask = _masks()[index]
    rle = encode_mask(mask)
    assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(decode_mask(rle), mask)
    assert encode_rle(torch.from_numpy(mask[None])).to_coco()[0] == rle
    counts = column_major_counts(mask).tolist()
    assert decompress_counts(rle["counts"]) == counts
    np.testing.assert_array_equal(decode_mask({"size": list(mask.shape), "counts": counts}), mask)


@pytest.mark.parametrize("index", range(5))
def test_strings_are_pycocotools_strings(index):
    mask_utils = pytest.importorskip("pycocotools.mask")
    mask = _masks()[index]
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert encode_mask(mask)["counts"] == theirs["counts"].decode("ascii")
    np.testing.assert_array_equal(decode_mask({"size": theirs["size"], "counts": theirs["counts"].decode()}), mask)


def test_compress_and_decompress_handle_large_and_negative_deltas():
    counts = [0, 1, 100000, 3, 5, 250000, 1, 1]  # deltas from two counts back go both ways
    assert decompress_counts(compress_counts(counts)) == counts


REFUSED_COUNTS = [
    ([5, 0, 5], "only the first may be 0", "a zero run after the first"),
    ([-1, 11], "non-negative", "a negative run"),
    ([4.5, 5.5], "non-negative integers", "not integers"),
    ([True, 9], "integers", "a bool"),
    ([3, 4], "cover 7 pixels, the image has H \\* W = 10", "too few pixels"),
    ([10, 1], "cover 11 pixels", "too many pixels"),
]


@pytest.mark.parametrize("counts, message, what", REFUSED_COUNTS, ids=[case[2] for case in REFUSED_COUNTS])
def test_check_counts_refuses(counts, message, what):
    with pytest.raises(RleError, match=message):
        check_counts(counts, 2, 5)


def test_check_counts_accepts_a_leading_zero_run():
    check_counts([0, 10], 2, 5)
    check_counts([10], 2, 5)


REFUSED_RLES = [
    ("abc", "rle must be an object"),
    ({"size": [2, 5]}, "rle must be an object"),
    ({"size": [2], "counts": [10]}, "rle size must be \\[H, W\\]"),
    ({"size": [5, 2], "counts": [10]}, "does not match the image's \\[H, W\\] = \\[2, 5\\]"),
    ({"size": [2, 5], "counts": 10}, "COCO string or a list"),
    ({"size": [2, 5], "counts": "0{{"}, "outside COCO's alphabet"),
    ({"size": [2, 5], "counts": "PP"}, "ends in the middle of a number"),
    ({"size": [2, 5], "counts": "0"}, "cover 0 pixels"),
    ({"size": [2, 5], "counts": [3, 0, 7]}, "only the first may be 0"),
]


@pytest.mark.parametrize("value, message", REFUSED_RLES, ids=[case[1][:30] for case in REFUSED_RLES])
def test_checked_rle_refuses_with_a_message(value, message):
    with pytest.raises(RleError, match=message):
        checked_rle(value, 2, 5)
    assert issubclass(RleError, ValueError)


def test_checked_rle_compresses_a_count_list():
    mask = np.zeros((2, 5), bool)
    mask[:, 1:3] = True
    counts = column_major_counts(mask).tolist()
    assert checked_rle({"size": [2, 5], "counts": counts}, 2, 5) == encode_mask(mask)
    assert checked_rle(encode_mask(mask), 2, 5) == encode_mask(mask)


def test_decode_mask_refuses_what_checked_rle_refuses():
    with pytest.raises(RleError, match="only the first may be 0"):
        decode_mask({"size": [2, 5], "counts": [3, 0, 7]})
    with pytest.raises(RleError, match="size"):
        decode_mask({"size": "2x5", "counts": [10]})
