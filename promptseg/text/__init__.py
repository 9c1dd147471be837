"""Text and concepts: the concept vocabulary, concept encoders (a bundled one and open_clip),
object crops and ``find_instances``."""

from promptseg.text.crops import box_crop, object_crop
from promptseg.text.encoder import ConceptEncoder, check_crops, check_text, check_texts
from promptseg.text.vocabulary import COLOURS, FILLS, POSITIONS, SHAPE_FAMILIES, SHAPES, SIZES, parse_query

__all__ = [
    "COLOURS",
    "ConceptEncoder",
    "FILLS",
    "POSITIONS",
    "SHAPES",
    "SHAPE_FAMILIES",
    "SIZES",
    "box_crop",
    "check_crops",
    "check_text",
    "check_texts",
    "object_crop",
    "parse_query",
]
