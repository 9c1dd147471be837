"""Parsing a request body as JSON with bounds, so that any body the server cannot take is a 400.

Python's ``json`` alone turns some bodies into server errors: 100,000 nested ``[`` raise RecursionError,
and an integer of more than 4300 digits a ValueError from ``int``. Here every failure is an
:class:`~promptseg.annotate.errors.ApiError` (400) naming the problem, and what parses is bounded:

- nesting at most :data:`MAX_DEPTH` arrays/objects deep (no body of the API needs more than 4);
- integers of at most :data:`MAX_INTEGER_DIGITS` digits, other numbers of at most
  :data:`MAX_NUMBER_CHARS` characters and finite (``1e999``, ``NaN`` and ``Infinity`` are refused);
- UTF-8 text.
"""

from __future__ import annotations

import json
import math
from typing import Any

from promptseg.annotate.errors import bad_request

MAX_DEPTH = 16
MAX_INTEGER_DIGITS = 20  # 2**64 has 20 digits
MAX_NUMBER_CHARS = 40


class _Refused(ValueError):
    """A number or constant the body may not hold (raised inside the decoder)."""


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body, within the bounds of the module.

    Raises:
        ApiError: 400 for text that is not UTF-8, not JSON, nested deeper than :data:`MAX_DEPTH`, or
            holding a number out of bounds.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise bad_request(f"the request body is not valid JSON: not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_number, parse_constant=_constant)
    except _Refused as error:
        raise bad_request(f"the request body is not valid JSON for this API: {error}") from None
    except RecursionError:
        raise bad_request(f"the request body is not valid JSON for this API: nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        raise bad_request(f"the request body is not valid JSON: {error}") from None
    if isinstance(value, (dict, list)) and text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(value)  # (only then can the nesting be too deep)
    return value


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise _Refused(f"an integer of {digits} digits (at most {MAX_INTEGER_DIGITS})")
    return int(text)


def _number(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number written with {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text} is out of the range of a double")
    return value


def _constant(text: str) -> float:
    raise _Refused(f"{text} is not a JSON number")


def _check_depth(value: Any) -> None:
    """400 when ``value`` nests arrays/objects more than :data:`MAX_DEPTH` deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise bad_request(f"the request body is not valid JSON for this API: nested more than {MAX_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
