"""Property tests (hypothesis) of the COCO RLE codec, promptseg.io.rle (issue 23, item 7).

Each test names the failure it guards against. Bounded: few examples, small masks, no deadline.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

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

BOUNDED = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
masks = st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(lambda shape: arrays(np.bool_, shape))


@st.composite
def valid_counts(draw, max_runs: int = 12, max_run: int = 2**31):
    """(counts, H, W): a first run >= 0, then runs >= 1, covering an H x W mask with H = 1."""
    first = draw(st.integers(0, max_run))
    rest = draw(st.lists(st.integers(1, max_run), max_size=max_runs))
    counts = [first, *rest]
    if sum(counts) == 0:
        counts = [0, 1]
    return counts, 1, sum(counts)


@BOUNDED
@given(masks)
def test_encode_then_decode_gives_the_mask_back(mask):
    """Guards against: a codec that loses or moves pixels (column-major order, the first-run rule)."""
    rle = encode_mask(mask)
    assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(decode_mask(rle), mask)
    assert checked_rle(rle, *mask.shape) == rle


@BOUNDED
@given(masks)
def test_the_codec_writes_what_pycocotools_writes(mask):
    """Guards against: files that pycocotools (and every COCO tool) reads differently."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert encode_mask(mask)["counts"] == expected["counts"].decode()
    np.testing.assert_array_equal(mask_utils.decode({**expected}).astype(bool), decode_mask(encode_mask(mask)))


@BOUNDED
@given(valid_counts())
def test_counts_strings_round_trip_for_any_run_lengths(case):
    """Guards against: wrong sign or continuation bits for long runs (up to 2**31) and for runs
    shorter than the one two before (negative deltas)."""
    counts, height, width = case
    assert decompress_counts(compress_counts(counts)) == counts
    check_counts(counts, height, width)


@BOUNDED
@given(valid_counts(max_run=50), st.data())
def test_runs_that_are_not_a_masks_runs_are_refused(case, data):
    """Guards against: zero-length runs (a 10**6-entry counts list stored and rewritten on every
    save), negative runs, and runs that do not cover H x W."""
    counts, height, width = case
    broken = list(counts)
    how = data.draw(st.sampled_from(["zero run", "negative", "short", "long"]))
    if how == "zero run":
        broken.insert(data.draw(st.integers(1, len(broken))), 0)
    elif how == "negative":
        broken[data.draw(st.integers(0, len(broken) - 1))] = -data.draw(st.integers(1, 5))
    elif how == "short":
        broken.append(1)
        width += 2
    else:
        broken.append(3)
    with pytest.raises(RleError):
        check_counts(broken, height, width)
    with pytest.raises(RleError):
        checked_rle({"size": [height, width], "counts": broken}, height, width)


@BOUNDED
@given(st.text(max_size=40))
def test_any_counts_string_is_decoded_or_refused_with_an_rle_error(text):
    """Guards against: a malformed counts string from a request raising anything but a clear RleError."""
    try:
        counts = decompress_counts(text)
    except RleError:
        return
    assert all(isinstance(count, int) for count in counts)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["size", "counts", "x"]), children, max_size=3),
    max_leaves=10,
)


@BOUNDED
@given(json_values)
def test_any_json_value_is_a_checked_rle_or_an_rle_error(value):
    """Guards against: an API body's RLE crashing the server (a 500) instead of a 400."""
    try:
        rle = checked_rle(value, 4, 5)
    except RleError:
        return
    np.testing.assert_array_equal(decode_mask(rle).shape, (4, 5))


@BOUNDED
@given(masks)
def test_column_major_counts_match_a_transposed_scan(mask):
    """Guards against: the fast run finder (no transposed copy) disagreeing with the plain definition."""
    flat = mask.T.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0] if flat[0] else [], changes]).astype(np.int64)
    expected = np.diff(np.concatenate([[0], starts, [flat.size]]))
    np.testing.assert_array_equal(column_major_counts(mask), expected)
