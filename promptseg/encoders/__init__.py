"""Image encoders: the seam between callers that embed images and the implementations that do it.

See :mod:`promptseg.encoders.base` for the interface. ``SamPredictor`` (and through it
``SamAutomaticMaskGenerator``) takes ``encoder=``; without one it uses
:func:`~promptseg.encoders.auto.default_image_encoder`: the model's own modules
(:func:`default_encoder`: a :class:`ModuleImageEncoder` for SAM, a :class:`Sam2ImageEncoder` for
SAM 2), or for a SAM model built by ``build_sam`` the CPU engine that
:func:`~promptseg.encoders.auto.choose_engine` picks, e.g. :class:`OnnxRuntimeImageEncoder` (the
model's graphs exported once to :mod:`promptseg.encoders.cache`). :class:`EngineImageEncoder` runs
any exported encoder engine (ONNX Runtime, TensorRT), :class:`Sam2EngineImageEncoder` a SAM 2 model's.
What an encoder returns is :mod:`promptseg.encoders.features`.
"""

from promptseg.encoders.auto import EngineChoice, choose_engine, default_encoder, default_image_encoder
from promptseg.encoders.base import ImageEncoder
from promptseg.encoders.engine import EngineImageEncoder
from promptseg.encoders.engine_sam2 import Sam2EngineImageEncoder
from promptseg.encoders.features import Features, MultiScaleFeatures, cat_features, image_embedding, select_rows
from promptseg.encoders.module import ModuleImageEncoder
from promptseg.encoders.onnxruntime import OnnxRuntimeEngine, OnnxRuntimeImageEncoder
from promptseg.encoders.sam2 import Sam2ImageEncoder

__all__ = [
    "EngineChoice",
    "EngineImageEncoder",
    "Features",
    "ImageEncoder",
    "ModuleImageEncoder",
    "MultiScaleFeatures",
    "OnnxRuntimeEngine",
    "OnnxRuntimeImageEncoder",
    "Sam2EngineImageEncoder",
    "Sam2ImageEncoder",
    "cat_features",
    "choose_engine",
    "default_encoder",
    "default_image_encoder",
    "image_embedding",
    "select_rows",
]
