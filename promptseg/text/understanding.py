"""What a concept encoder understood of a phrase, said out loud.

A closed-vocabulary encoder (the bundled one) knows a fixed list of words; any other word reaches
it as one shared "unknown" token that carries nothing, so "pink circle" is read as "circle" and
"qwerty" as nothing at all. :func:`understood_text` makes that visible: a warning
(:class:`UnknownWordsWarning`) names the words left out, and a phrase with no known word left is
refused (:class:`promptseg.errors.UnknownTextError`, a ValueError) instead of producing a mask or
instances from nothing. An open-vocabulary encoder (open_clip) reads every word; whether its
answer matches is :mod:`promptseg.text.matching`'s question.
"""

from __future__ import annotations

import warnings

from promptseg.errors import UnknownTextError
from promptseg.text.encoder import TextReading, check_text

LISTED_WORDS = 60
"""Most vocabulary words an error lists."""


class UnknownWordsWarning(UserWarning):
    """Words of a text prompt or query that the concept encoder does not know were left out."""


def read_text(encoder: object, text: str) -> TextReading:
    """``encoder.read_text(text)`` (a :class:`ConceptEncoder`'s), else an open-vocabulary reading."""
    reader = getattr(encoder, "read_text", None)
    return reader(text) if callable(reader) else TextReading.open(text)


def understood_text(encoder: object, text: object, what: str = "text") -> TextReading:
    """Check that ``encoder`` understands something of ``text``, and say what it leaves out.

    Args:
        encoder: a concept encoder (:class:`promptseg.text.ConceptEncoder`).
        text: the phrase of a text prompt or query.
        what: how the phrase is named in messages ("text", "query").
    Returns:
        The :class:`TextReading`.
    Warns:
        UnknownWordsWarning: naming the words outside the vocabulary, which were left out.
    Raises:
        TypeError, ValueError: ``text`` is not a non-empty string.
        UnknownTextError: no word of ``text`` is one the encoder knows (a ValueError).
    """
    text = check_text(text, what)
    reading = read_text(encoder, text)
    name = getattr(encoder, "name", type(encoder).__name__)
    if not reading.known:
        outside = f"{_quoted(reading.unknown)} {'is' if len(reading.unknown) == 1 else 'are'} outside its vocabulary"
        raise UnknownTextError(
            f"{what} {text!r} has no word that the concept encoder ({name}) knows"
            f"{': ' + outside if reading.unknown else ' (only words that carry nothing)'}, so it would match "
            f"nothing in particular. It knows: {_vocabulary(encoder)}"
        )
    if reading.unknown:
        warnings.warn(
            UnknownWordsWarning(
                f"{what} {text!r}: {_quoted(reading.unknown)} {'is' if len(reading.unknown) == 1 else 'are'} outside "
                f"the vocabulary of the concept encoder ({name}) and left out; understood: {' '.join(reading.known)}"
            ),
            stacklevel=3,
        )
    return reading


def _quoted(words: tuple[str, ...]) -> str:
    return ", ".join(repr(word) for word in words)


def _vocabulary(encoder: object) -> str:
    words = tuple(getattr(encoder, "vocabulary", ()))
    if not words:
        return "(its vocabulary is not listed)"
    shown = ", ".join(words[:LISTED_WORDS])
    return shown + (f", ... ({len(words)} words)" if len(words) > LISTED_WORDS else "")
