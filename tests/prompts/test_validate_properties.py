"""Property tests (hypothesis) of the prompt validator, promptseg.prompts.validate (issue 23, item 7):
one rule for whether prompts lie on the image, shared by the command line and the annotation API.

Each test names the failure it guards against. Bounded: few examples, no deadline.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from promptseg.annotate.errors import ApiError
from promptseg.annotate.prompts import parse_click
from promptseg.prompts.validate import Prompt, check_prompt, check_prompt_in_image

BOUNDED = settings(max_examples=80, deadline=None)
sizes = st.integers(1, 2000)
coordinates = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False))
points = st.lists(st.tuples(coordinates, coordinates), min_size=1, max_size=6)


def _inside(x: float, y: float, width: int, height: int) -> bool:
    return 0 <= x <= width and 0 <= y <= height


@BOUNDED
@given(points, sizes, sizes)
def test_points_are_refused_exactly_when_one_lies_off_the_image(point_list, width, height):
    """Guards against: `predict --point 99999,-99999` on a 128x128 image giving a mask (exit 0)."""
    outside = [i for i, (x, y) in enumerate(point_list) if not _inside(x, y, width, height)]
    if not outside:
        check_prompt_in_image(point_list, None, width, height)
        return
    with pytest.raises(ValueError, match=rf"^points\[{outside[0]}\] = .* is outside the image \(0\.\.{width}, 0\.\.{height} pixels\)$"):
        check_prompt_in_image(point_list, None, width, height)


@BOUNDED
@given(points, st.lists(coordinates, min_size=4, max_size=4), sizes, sizes)
def test_the_command_line_and_the_api_give_one_answer_and_one_message(point_list, box, width, height):
    """Guards against: the command line and the annotation API checking prompts differently."""
    box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
    body = {"points": [list(p) for p in point_list], "labels": [1] * len(point_list), "box": box}
    try:
        check_prompt_in_image(point_list, box, width, height)
        cli_error = None
    except ValueError as error:
        cli_error = str(error)
    try:
        parse_click(body, width, height)
        api_error = None
    except ApiError as error:
        assert error.status == 400
        api_error = error.message
    assert cli_error == api_error


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True, width=32)


@BOUNDED
@given(
    st.one_of(st.none(), arrays(np.float64, st.tuples(st.integers(0, 4), st.integers(1, 3)), elements=any_float)),
    st.one_of(st.none(), arrays(np.int64, st.integers(0, 4), elements=st.integers(-2, 3))),
    st.one_of(st.none(), arrays(np.float32, st.integers(3, 5), elements=any_float)),
)
def test_check_prompt_returns_the_documented_prompt_or_a_clear_error(coords, labels, box):
    """Guards against: malformed prompts reaching the model (NaN, wrong shapes, labels other than
    0/1, inverted boxes) or failing with anything but a TypeError/ValueError; and the caller's
    arrays being modified."""
    before = [None if a is None else a.copy() for a in (coords, labels, box)]
    try:
        prompt = check_prompt(coords, labels, box)
    except (TypeError, ValueError):
        pass
    else:
        assert isinstance(prompt, Prompt)
        if prompt.point_coords is not None:
            assert prompt.point_coords.dtype == np.float64 and prompt.point_coords.shape[1] == 2
            assert np.isfinite(prompt.point_coords).all() and set(prompt.point_labels.tolist()) <= {0, 1}
            assert prompt.point_labels.shape == (prompt.point_coords.shape[0],)
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            assert prompt.box.dtype == np.float64 and np.isfinite(prompt.box).all() and x0 <= x1 and y0 <= y1
    for given_array, copy in zip((coords, labels, box), before):
        if given_array is not None:
            np.testing.assert_array_equal(given_array, copy)
