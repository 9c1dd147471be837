"""``TensorRTPredictor``: the ``SamPredictor`` API on TensorRT engines (see ``EnginePredictor``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import torch

from promptseg.export.engine_predictor import EnginePredictor
from promptseg.export.tensorrt.builder import build_sam_engines
from promptseg.export.profiles import EngineLimits
from promptseg.export.tensorrt.runtime import TensorRTEngine
from promptseg.modeling import Sam


class TensorRTPredictor(EnginePredictor):
    """``SamPredictor`` on TensorRT engines of the image encoder and the batched decoder.

    Build one with :meth:`from_model`, which builds the engines or loads them from the cache.
    """

    @classmethod
    def from_model(
        cls,
        model: Sam,
        *,
        precision: str = "fp16",
        limits: EngineLimits = EngineLimits(),
        cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        device: Union[str, torch.device] = "cuda",
    ) -> "TensorRTPredictor":
        """Build (or load from the cache) the engines of ``model`` and return a predictor on them.

        See ``promptseg.export.tensorrt.build_sam_engines`` for the arguments.
        """
        device = torch.device(device)
        cache = Path(cache_dir) if cache_dir is not None else None
        engines = build_sam_engines(model, precision=precision, limits=limits, cache_dir=cache, device=device)
        return cls(model, TensorRTEngine(engines.encoder, device), TensorRTEngine(engines.decoder, device), limits)
