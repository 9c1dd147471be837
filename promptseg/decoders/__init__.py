"""Decoders: the seam between callers that decode prompts and the implementations that do it.

See :mod:`promptseg.decoders.base` for the interface (``decode``, ``postprocess``, ``measure``).
``SamPredictor`` and ``SamAutomaticMaskGenerator`` take ``decoder=`` (default :class:`AutoDecoder`).
SAM 2 models have their decoders in :mod:`promptseg.decoders.sam2` (``AutoDecoder`` picks them);
:class:`EngineDecoder` and :class:`Sam2EngineDecoder` run exported decoder graphs in an engine.
The image side has the same kind of seam in :mod:`promptseg.encoders`.
"""

from promptseg.decoders.auto import AutoDecoder
from promptseg.decoders.base import DecodeResult, Decoder, ModelDecoder, ModuleDecoder, select_outputs
from promptseg.decoders.engine import EngineDecoder
from promptseg.decoders.engine_sam2 import Sam2EngineDecoder
from promptseg.decoders.fused import FusedDecoder, ImageTable, fused_path_available
from promptseg.decoders.graphs import GraphDecoder
from promptseg.decoders.sam2 import (
    LowResCleanup,
    Sam2Decoder,
    Sam2FusedDecoder,
    Sam2ModuleDecoder,
    sam2_fused_path_available,
    upscale_sam2_logits,
)

__all__ = [
    "AutoDecoder",
    "DecodeResult",
    "Decoder",
    "EngineDecoder",
    "FusedDecoder",
    "GraphDecoder",
    "ImageTable",
    "ModelDecoder",
    "LowResCleanup",
    "ModuleDecoder",
    "Sam2Decoder",
    "Sam2EngineDecoder",
    "Sam2FusedDecoder",
    "Sam2ModuleDecoder",
    "fused_path_available",
    "sam2_fused_path_available",
    "select_outputs",
    "upscale_sam2_logits",
]
