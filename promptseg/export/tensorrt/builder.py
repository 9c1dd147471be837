"""Building TensorRT engines from promptseg's ONNX graphs, with a timing cache and an engine cache.

Precision follows what the installed TensorRT offers:

* TensorRT 10.x (``BuilderFlag.FP16`` exists): the float32 graph is parsed and
  the FP16/BF16 builder flag set; every normalisation and softmax layer is
  constrained to float32 (``OBEY_PRECISION_CONSTRAINTS``), the fix for the
  LayerNorm overflow of half-precision SAM encoders.
* TensorRT without precision flags (11.x): the network is strongly typed and
  built from a graph exported in the target dtype, whose explicit casts already
  keep LayerNorm and softmax statistics in float32.

No TensorRT plugin is added: promptseg's CUDA kernels would become plugins only
where measured faster than TensorRT's own fusion, and no measurement has been
made (see docs/export.md).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import torch

from promptseg.export.onnx_decoder import export_onnx_batched_decoder
from promptseg.export.onnx_encoder import export_onnx_encoder
from promptseg.export.tensorrt.cache import (
    check_precision,
    engine_key,
    engine_path,
    timing_cache_path,
    weights_hash,
)
from promptseg.export.profiles import EngineLimits, Profile, decoder_profile, encoder_profile
from promptseg.export.tensorrt.runtime import import_tensorrt
from promptseg.io import write_bytes_atomically
from promptseg.modeling import Sam

PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_WORKSPACE_BYTES = 4 << 30


@dataclass(frozen=True)
class SamEngines:
    """Engine files of one model: the image encoder and the batched decoder."""

    encoder: Path
    decoder: Path
    precision: str
    limits: EngineLimits


def uses_strong_typing(tensorrt: ModuleType) -> bool:
    """True when the installed TensorRT has no FP16 builder flag (11.x): precision comes from the graph's types."""
    return not hasattr(tensorrt.BuilderFlag, "FP16")


def build_engine(
    onnx_path: Path,
    profile: Profile,
    precision: str,
    timing_cache: Path,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> bytes:
    """Build a serialised engine from ``onnx_path`` (its external data beside it).

    Args:
        profile: (min, opt, max) shape per input: the single optimisation profile.
        precision: "fp32", "fp16" or "bf16". With strong typing the graph must
            already be in that precision.
        timing_cache: read if it exists, then written back with the new timings.
        workspace_bytes: the builder's workspace memory limit.
    """
    check_precision(precision)
    tensorrt = import_tensorrt()
    logger = tensorrt.Logger(tensorrt.Logger.WARNING)
    builder = tensorrt.Builder(logger)
    strongly_typed = uses_strong_typing(tensorrt)
    flags = 1 << int(tensorrt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = tensorrt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(tensorrt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if not strongly_typed:
        _set_precision(tensorrt, network, config, precision)
    optimisation_profile = builder.create_optimization_profile()
    for name, (smallest, optimal, largest) in profile.items():
        optimisation_profile.set_shape(name, smallest, optimal, largest)
    config.add_optimization_profile(optimisation_profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}; see the TensorRT log above")
    write_bytes_atomically(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _set_precision(tensorrt: ModuleType, network: Any, config: Any, precision: str) -> None:
    """TensorRT 10.x: enable the reduced precision, keeping normalisation and softmax layers in float32."""
    if precision == "fp32":
        config.clear_flag(tensorrt.BuilderFlag.TF32)
        return
    config.set_flag(tensorrt.BuilderFlag.FP16 if precision == "fp16" else tensorrt.BuilderFlag.BF16)
    config.set_flag(tensorrt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    float32_layers = (tensorrt.LayerType.NORMALIZATION, tensorrt.LayerType.SOFTMAX)
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type in float32_layers:
            layer.precision = tensorrt.float32
            for output in range(layer.num_outputs):
                layer.set_output_type(output, tensorrt.float32)


def build_sam_engines(
    model: Sam,
    *,
    precision: str = "fp16",
    limits: EngineLimits = EngineLimits(),
    cache_dir: Optional[Path] = None,
    device: Optional[torch.device] = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> SamEngines:
    """The encoder and batched-decoder engines of ``model``, built unless already in the cache.

    Engines are cached under ``cache_dir`` (default ``promptseg.export.tensorrt.cache.default_cache_dir()``)
    keyed by the model's weights hash, the GPU name, the TensorRT version, the
    precision and the shape profile; a timing cache per GPU model and TensorRT
    version speeds up later builds.

    Args:
        model: the SAM to build from; it is not modified.
        precision: "fp32", "fp16" or "bf16".
        limits: the largest call shapes (see :class:`EngineLimits`).
        device: the CUDA device to build for (default: the current one).
    """
    check_precision(precision)
    tensorrt = import_tensorrt()
    device = torch.device(device or "cuda")
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    gpu_name = torch.cuda.get_device_name(device)
    graph_dtype = PRECISION_DTYPES[precision] if uses_strong_typing(tensorrt) else torch.float32
    prompt_encoder = model.prompt_encoder
    profiles = {
        "encoder": encoder_profile(model.image_encoder.img_size, limits),
        "decoder": decoder_profile(prompt_encoder.embed_dim, prompt_encoder.image_embedding_size[0], limits),
    }
    digest = weights_hash(model)
    timing_cache = timing_cache_path(gpu_name, tensorrt.__version__, cache_dir)
    paths = {}
    for kind, profile in profiles.items():
        key = engine_key(
            kind=kind,
            weights_digest=digest,
            gpu_name=gpu_name,
            tensorrt_version=tensorrt.__version__,
            precision=precision,
            profile=profile,
        )
        paths[kind] = engine_path(key, cache_dir)
        if paths[kind].is_file():
            continue
        paths[kind].parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".onnx-", dir=paths[kind].parent) as scratch:
            onnx_path = Path(scratch) / f"{kind}.onnx"
            if kind == "encoder":
                export_onnx_encoder(model, onnx_path, dtype=graph_dtype)
            else:
                export_onnx_batched_decoder(model, onnx_path, dtype=graph_dtype)
            with torch.cuda.device(device):
                engine = build_engine(onnx_path, profile, precision, timing_cache, workspace_bytes)
        write_bytes_atomically(paths[kind], engine)
    return SamEngines(encoder=paths["encoder"], decoder=paths["decoder"], precision=precision, limits=limits)

