"""TensorRT engines of SAM: build (with a timing cache), cache, and predict.

``tensorrt`` is imported only when an engine is built or loaded; without it
those calls raise :class:`TensorRTUnavailableError` saying what is missing.
The cache keys, cache paths and shape profiles are plain Python.
"""

from promptseg.export.tensorrt.builder import SamEngines, build_engine, build_sam_engines, uses_strong_typing
from promptseg.export.tensorrt.cache import default_cache_dir, engine_key, engine_path, timing_cache_path, weights_hash
from promptseg.export.tensorrt.predictor import TensorRTPredictor
from promptseg.export.profiles import EngineLimits, decoder_profile, encoder_profile
from promptseg.export.tensorrt.runtime import TensorRTEngine, TensorRTUnavailableError, import_tensorrt

__all__ = [
    "EngineLimits",
    "SamEngines",
    "TensorRTEngine",
    "TensorRTPredictor",
    "TensorRTUnavailableError",
    "build_engine",
    "build_sam_engines",
    "decoder_profile",
    "default_cache_dir",
    "encoder_profile",
    "engine_key",
    "engine_path",
    "import_tensorrt",
    "timing_cache_path",
    "uses_strong_typing",
    "weights_hash",
]
