"""Image encoders: the seam between callers that embed images and the implementations that do it.

See :mod:`promptseg.encoders.base` for the interface. ``SamPredictor`` (and through it
``SamAutomaticMaskGenerator``) takes ``encoder=``; without one it uses
:func:`~promptseg.encoders.auto.default_image_encoder`: the model's module
(:class:`ModuleImageEncoder`), or for a model built by ``build_sam`` the CPU engine that
:func:`~promptseg.encoders.auto.choose_engine` picks, e.g. :class:`OnnxRuntimeImageEncoder` (the
model's graphs exported once to :mod:`promptseg.encoders.cache`). :class:`EngineImageEncoder` runs
any exported encoder engine (ONNX Runtime, TensorRT).
"""

from promptseg.encoders.auto import EngineChoice, choose_engine, default_image_encoder
from promptseg.encoders.base import ImageEncoder
from promptseg.encoders.engine import EngineImageEncoder
from promptseg.encoders.module import ModuleImageEncoder
from promptseg.encoders.onnxruntime import OnnxRuntimeEngine, OnnxRuntimeImageEncoder

__all__ = [
    "EngineChoice",
    "EngineImageEncoder",
    "ImageEncoder",
    "ModuleImageEncoder",
    "OnnxRuntimeEngine",
    "OnnxRuntimeImageEncoder",
    "choose_engine",
    "default_image_encoder",
]
