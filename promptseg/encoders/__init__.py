"""Image encoders: the seam between callers that embed images and the implementations that do it.

See :mod:`promptseg.encoders.base` for the interface. ``SamPredictor`` (and through it
``SamAutomaticMaskGenerator``) takes ``encoder=`` (default :func:`default_encoder`: a
:class:`ModuleImageEncoder` for SAM, a :class:`Sam2ImageEncoder` for SAM 2); the engines' encoder
is ``promptseg.export.engine_encoder.EngineImageEncoder``. What an encoder returns is
:mod:`promptseg.encoders.features`.
"""

from typing import Any

from promptseg.encoders.base import ImageEncoder
from promptseg.encoders.features import Features, MultiScaleFeatures, cat_features, image_embedding, select_rows
from promptseg.encoders.module import ModuleImageEncoder
from promptseg.encoders.sam2 import Sam2ImageEncoder
from promptseg.sam2.modeling.sam2_base import SAM2Base

__all__ = [
    "Features",
    "ImageEncoder",
    "ModuleImageEncoder",
    "MultiScaleFeatures",
    "Sam2ImageEncoder",
    "cat_features",
    "default_encoder",
    "image_embedding",
    "select_rows",
]


def default_encoder(model: Any) -> ImageEncoder:
    """The encoder that runs ``model``'s own image modules: :class:`Sam2ImageEncoder` for a SAM 2
    model (``promptseg.sam2``), :class:`ModuleImageEncoder` for SAM."""
    return Sam2ImageEncoder(model) if isinstance(model, SAM2Base) else ModuleImageEncoder(model)
