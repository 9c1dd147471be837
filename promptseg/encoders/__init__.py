"""Image encoders: the seam between callers that embed images and the implementations that do it.

See :mod:`promptseg.encoders.base` for the interface. ``SamPredictor`` (and through it
``SamAutomaticMaskGenerator``) takes ``encoder=`` (default :class:`ModuleImageEncoder`); the
engines' encoder is ``promptseg.export.engine_encoder.EngineImageEncoder``.
"""

from promptseg.encoders.base import ImageEncoder
from promptseg.encoders.module import ModuleImageEncoder

__all__ = ["ImageEncoder", "ModuleImageEncoder"]
