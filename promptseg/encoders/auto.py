"""Which engine embeds images on the CPU, and why: the choice ``SamPredictor`` makes for a model built by
``build_sam`` (or ``build_bundled_sam``, or the CLI) when it is given no ``encoder=``.

A model carries what was asked for in ``model.image_encoder.engine`` (recorded by ``build_sam(engine=...)``;
the export an ONNX Runtime engine runs is made by ``promptseg.export.prepare_engine``, which the public
``promptseg.build_sam`` and the CLI call):

* ``torch``: the model's own module (on the CPU, float32 attention runs
  :func:`promptseg.ops.vit_attention`'s cache-blocked CPU path);
* ``onnxruntime``: the model's graphs, exported once to the cache (:mod:`promptseg.encoders.cache`),
  in ONNX Runtime; float32, the model's results to float32 rounding;
* ``onnxruntime-int8``: the same with a dynamically quantised encoder (not exact; its measured
  accuracy is in the cache entry and in docs/cpu.md);
* ``auto`` (the default): ``PROMPTSEG_CPU_ENGINE`` if set, else the fastest exact engine as measured
  by ``benchmarks/cpu.py``: torch (:data:`AUTO_REASON`). ONNX Runtime is never taken on its own,
  even with its export cached.

Models on a GPU or not in float32 always run their module.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Optional, Union

import torch

from promptseg.encoders.base import ImageEncoder
from promptseg.encoders.cache import CacheEntry, find_entry
from promptseg.encoders.module import ModuleImageEncoder
from promptseg.encoders.onnxruntime import OnnxRuntimeImageEncoder
from promptseg.encoders.sam2 import Sam2ImageEncoder
from promptseg.modeling import Sam
from promptseg.sam2.modeling.sam2_base import SAM2Base
from promptseg.settings import CPU_ENGINE_ENV, ONNXRUNTIME_ENGINES, check_cpu_engine

AUTO_REASON = (
    "the fastest exact CPU engine measured (benchmarks/results/cpu_*.json): ONNX Runtime fp32 embeds "
    "no faster and decodes batches of prompts slower"
)
"""Why ``auto`` runs torch: measured on this project's CPU with ``benchmarks/cpu.py`` (README, CPU table)."""


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


@dataclass(frozen=True)
class EngineChoice:
    """The engine that embeds a model's images, and why.

    Attributes:
        engine: ``torch``, ``onnxruntime`` or ``onnxruntime-int8``.
        reason: why, in a few words (``repr(predictor)`` and ``promptseg info`` show it).
        entry: the cache entry of an ONNX Runtime engine, else None.
    """

    engine: str
    reason: str
    entry: Optional[CacheEntry] = None

    def image_encoder(self, model: Sam) -> ImageEncoder:
        """The encoder of this choice for ``model``."""
        if self.entry is None:
            return ModuleImageEncoder(model)
        if self.engine == "onnxruntime-int8":
            return OnnxRuntimeImageEncoder(model, self.entry.int8_encoder, precision="int8")
        return OnnxRuntimeImageEncoder(model, self.entry.encoder)

    def __str__(self) -> str:
        return f"{self.engine}: {self.reason}"


def requested_engine(model: Sam) -> tuple[Optional[str], str]:
    """(what the model asks for, who asked): ``model.image_encoder.engine`` unless it is ``auto`` and
    ``PROMPTSEG_CPU_ENGINE`` is set. None: the model was not built by ``build_sam``."""
    engine = getattr(model.image_encoder, "engine", None)
    if engine == "auto" and os.environ.get(CPU_ENGINE_ENV):
        return check_cpu_engine(os.environ[CPU_ENGINE_ENV], CPU_ENGINE_ENV), f"{CPU_ENGINE_ENV}={os.environ[CPU_ENGINE_ENV]}"
    return engine, f"engine={engine!r}"


def choose_engine(model: Sam, cache_dir: Optional[os.PathLike] = None) -> EngineChoice:
    """The engine that embeds ``model``'s images (see the module docstring for the rules).

    Raises:
        FileNotFoundError: an ONNX Runtime engine was asked for by ``build_sam(engine=...)`` (not by
            ``PROMPTSEG_CPU_ENGINE``, which falls back to torch), but the model's export is not in
            the cache (build it with ``promptseg.export.prepare_engine``, which ``promptseg.build_sam``
            calls), for example because the weights changed since.
    """
    engine, source = requested_engine(model)
    if engine in (None, "torch"):
        return EngineChoice("torch", f"asked for ({source})" if engine else "the model's own module")
    if model.device.type != "cpu" or model.dtype != torch.float32:
        return EngineChoice("torch", f"the CPU engines run float32 on the CPU; the model is {model.dtype} on {model.device}")
    if engine in ONNXRUNTIME_ENGINES:
        entry = find_entry(model, cache_dir)
        if entry is None or (engine == "onnxruntime-int8" and not entry.has_int8):
            if source.startswith(CPU_ENGINE_ENV):  # a setting for every model: those not exported run torch
                return EngineChoice("torch", f"{source}, but no {engine} export of these weights is cached")
            raise FileNotFoundError(
                f"{source} asks for ONNX Runtime, but no {engine} export of this model's weights is cached: run "
                "promptseg.export.prepare_engine(model) (promptseg.build_sam(..., engine=...) and the CLI do), after any "
                "change of the weights"
            )
        return EngineChoice(engine, f"asked for ({source})", entry)
    return EngineChoice("torch", AUTO_REASON)


def default_encoder(model: Union[Sam, SAM2Base]) -> ImageEncoder:
    """The encoder that runs ``model``'s own image modules: :class:`Sam2ImageEncoder` for a SAM 2
    model (``promptseg.sam2``), :class:`ModuleImageEncoder` for SAM."""
    return Sam2ImageEncoder(model) if isinstance(model, SAM2Base) else ModuleImageEncoder(model)


def default_image_encoder(model: Union[Sam, SAM2Base]) -> tuple[ImageEncoder, Optional[EngineChoice]]:
    """The encoder a predictor of ``model`` uses when given none, and the choice behind it (None for a
    model not built by ``build_sam``, e.g. a SAM 2 model: its own modules, :func:`default_encoder`)."""
    if isinstance(model, SAM2Base) or getattr(model.image_encoder, "engine", None) is None:
        return default_encoder(model), None
    choice = choose_engine(model)
    return choice.image_encoder(model), choice
