"""The concept vocabulary of promptseg's synthetic scenes and bundled concept encoder.

Every word here is drawn by :func:`promptseg.data.concepts.generate_concept_scene`, so captions
built from it describe what the image shows. ``circle`` is a round ``ellipse`` and ``square`` a
rectangle with equal sides: a query for the family word (``ellipse``, ``rectangle``) matches
both members; the member word matches only itself.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

#: colour name -> (R, G, B) uint8 values the generator paints with.
COLOURS: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "red": (220, 30, 30),
        "green": (40, 170, 50),
        "blue": (35, 70, 220),
        "yellow": (240, 220, 30),
        "orange": (245, 135, 20),
        "purple": (135, 40, 175),
        "white": (245, 245, 245),
        "black": (15, 15, 15),
        "grey": (128, 128, 128),
    }
)

#: shape names the generator draws.
SHAPES: tuple[str, ...] = ("ellipse", "circle", "rectangle", "square", "triangle", "star", "ring", "stroke", "blob")

#: shape name -> the family it belongs to (a query for the family matches every member).
SHAPE_FAMILIES: Mapping[str, str] = MappingProxyType(
    {"ellipse": "ellipse", "circle": "ellipse", "rectangle": "rectangle", "square": "rectangle"}
    | {name: name for name in ("triangle", "star", "ring", "stroke", "blob")}
)

#: fill words: how an object's colour is laid on (always in shades of its named colour).
FILLS: tuple[str, ...] = ("plain", "striped", "checkered", "shaded")

#: relative size words (small / large objects; medium ones get none).
SIZES: tuple[str, ...] = ("small", "large")

#: position words of top-level objects, from their centre in the image.
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")

#: spelling variants accepted in queries, mapped to the vocabulary word.
SYNONYMS: Mapping[str, str] = MappingProxyType(
    {
        "gray": "grey",
        "violet": "purple",
        "oval": "ellipse",
        "rectangular": "rectangle",
        "circular": "circle",
        "line": "stroke",
        "curve": "stroke",
        "stripy": "striped",
        "stripes": "striped",
        "checked": "checkered",
        "chequered": "checkered",
        "gradient": "shaded",
        "flat": "plain",
        "solid": "plain",
        "big": "large",
        "tiny": "small",
        "center": "centre",
    }
)


def shape_matches(query: str, shape: str) -> bool:
    """Whether a query naming ``query`` describes an object drawn as ``shape``.

    A family word matches its members (``ellipse`` matches a circle); any other word only itself.
    """
    if query == shape:
        return True
    return SHAPE_FAMILIES.get(query) == query and SHAPE_FAMILIES.get(shape) == query


def normalise_word(word: str) -> str:
    """Lower-case ``word``, strip punctuation, and map a spelling variant to its vocabulary word."""
    word = word.lower().strip(".,;:!?\"'()")
    return SYNONYMS.get(word, word)


def parse_query(text: str) -> dict[str, str]:
    """The attributes a phrase names, e.g. ``"a small striped red star"`` ->
    ``{"size": "small", "fill": "striped", "colour": "red", "shape": "star"}``.

    Words outside the vocabulary are ignored; when a phrase names two values of one attribute,
    the last wins. Position words combine (``"top left"``).
    """
    found: dict[str, str] = {}
    positions: list[str] = []
    for raw in text.split():
        word = normalise_word(raw)
        if word in COLOURS:
            found["colour"] = word
        elif word in SHAPE_FAMILIES:
            found["shape"] = word
        elif word in FILLS:
            found["fill"] = word
        elif word in SIZES:
            found["size"] = word
        elif word in POSITIONS:
            positions.append(word)
    if positions:
        found["position"] = " ".join(positions)
    return found
