"""Text and concepts: the concept vocabulary, concept encoders (a bundled one and open_clip),
object crops and the text prompt encoder. ``find_instances`` lives a floor up, in :mod:`promptseg.find`;
the training of concept encoders and text prompts in :mod:`promptseg.train`."""

from promptseg.text.crops import box_crop, object_crop
from promptseg.text.bundled_model import BundledConceptEncoder
from promptseg.text.encoder import ConceptEncoder, check_crops, check_text, check_texts
from promptseg.text.loading import bundled_concept_checkpoint, load_concept_encoder
from promptseg.text.open_clip_backend import OpenClipConceptEncoder
from promptseg.text.checkpoint import TEXT_PREFIX, read_text_checkpoint, save_text_checkpoint
from promptseg.text.prompt_encoder import TextPromptEncoder
from promptseg.text.prompting import TextPrompting, load_text_model
from promptseg.text.vocabulary import COLOURS, FILLS, POSITIONS, SHAPE_FAMILIES, SHAPES, SIZES, parse_query

__all__ = [
    "BundledConceptEncoder",
    "COLOURS",
    "ConceptEncoder",
    "OpenClipConceptEncoder",
    "bundled_concept_checkpoint",
    "load_concept_encoder",
    "FILLS",
    "POSITIONS",
    "SHAPES",
    "SHAPE_FAMILIES",
    "SIZES",
    "TEXT_PREFIX",
    "TextPromptEncoder",
    "TextPrompting",
    "box_crop",
    "check_crops",
    "check_text",
    "check_texts",
    "load_text_model",
    "object_crop",
    "parse_query",
    "read_text_checkpoint",
    "save_text_checkpoint",
]
