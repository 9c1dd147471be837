"""Class labels: one rule for every label that enters the annotations file (an accept, a relabel,
``--labels``, ``--labels-file``).

A label is normalised to Unicode NFC with surrounding whitespace stripped, so "café" typed two ways is
one class. It is refused when empty, longer than :data:`MAX_LABEL_LENGTH` characters, or holding a
character that would make it print as something else: control characters (C0, C1, DEL), line and
paragraph separators, unpaired surrogates, and the bidirectional controls (U+202E, which shows the rest
of a name reversed, and its kin). Other format characters, such as the zero-width joiner of emoji
sequences, are kept.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Sequence

MAX_LABEL_LENGTH = 100
MAX_LABELS = 1000
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_REFUSED_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")


def normalised_label(value: Any) -> str:
    """``value`` as a label (NFC, stripped); ValueError naming the problem when it cannot be one."""
    if not isinstance(value, str):
        raise ValueError(f"a label must be a string, got {type(value).__name__}")
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ValueError(f"a label must be a non-empty name, got {value[:40]!r}")
    if len(name) > MAX_LABEL_LENGTH:
        raise ValueError(f"a label must be at most {MAX_LABEL_LENGTH} characters, got {len(name)}")
    for position, character in enumerate(name):
        if character in BIDI_CONTROLS or unicodedata.category(character) in _REFUSED_CATEGORIES:
            kind = "a bidirectional control" if character in BIDI_CONTROLS else "a control character"
            raise ValueError(
                f"a label may not hold {kind} (U+{ord(character):04X} at position {position}), got {name[:40]!r}"
            )
    return name


def checked_labels(labels: Sequence[str]) -> list[str]:
    """A fixed label list (``--labels``): 1 to :data:`MAX_LABELS` names, each :func:`normalised_label`, no repeats."""
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise ValueError(f"labels must be a list of names, got {type(labels).__name__}")
    if not labels or len(labels) > MAX_LABELS:
        raise ValueError(f"give 1 to {MAX_LABELS} labels, got {len(labels)}")
    names = []
    for index, label in enumerate(labels):
        try:
            names.append(normalised_label(label))
        except ValueError as error:
            raise ValueError(f"label {index + 1}: {error}") from None
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"labels must not repeat, got {repeated} more than once")
    return names
