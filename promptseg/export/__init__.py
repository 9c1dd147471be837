"""Deploying SAM outside PyTorch: ONNX graphs (official-compatible and TensorRT-friendly) and TensorRT engines.

ONNX (needs the ``onnx`` package; ``onnxruntime`` to run or quantise):

* :func:`export_onnx_encoder`: the image encoder, float32/float16/bfloat16,
  dynamic batch, weights over 2 GiB as external data, optional in-graph preprocessing.
* :func:`export_onnx_decoder`: a drop-in for the official ``SamOnnxModel`` export.
* :func:`export_onnx_batched_decoder`: P prompts per call, low-res output, no
  value-dependent shapes; the decoder TensorRT builds from.
* :func:`export_onnx_bundle`: all three plus a JSON description (``promptseg export onnx``).
* SAM 2 / 2.1 models (``promptseg.sam2``): :func:`export_sam2_onnx_encoder`,
  :func:`export_sam2_onnx_decoder` (:mod:`promptseg.export.sam2_onnx`), run behind the seams by
  :class:`Sam2EngineImageEncoder` and :class:`Sam2EngineDecoder`; ``export_onnx_bundle`` writes them.

ONNX Runtime as the CPU engine: :func:`prepare_cpu_engine` exports a model's graphs once into the
cache that the predictors use (docs/cpu.md); :func:`prepare_engine` does it where the model asks for
that engine (``promptseg.build_sam(..., engine="onnxruntime")`` calls it).

TensorRT (needs ``tensorrt`` >= 10 and a GPU): :mod:`promptseg.export.tensorrt`.
"""

from promptseg.decoders import Sam2EngineDecoder
from promptseg.encoders import Sam2EngineImageEncoder
from promptseg.export.bundle import export_onnx_bundle
from promptseg.export.engine_decoder import EngineDecoder
from promptseg.export.engine_encoder import EngineImageEncoder
from promptseg.export.engine_predictor import EnginePredictor
from promptseg.export.onnx_common import describe_onnx
from promptseg.export.onnx_decoder import export_onnx_batched_decoder, export_onnx_decoder
from promptseg.export.onnx_encoder import export_onnx_encoder
from promptseg.export.onnx_graph import tensorrt_hazards
from promptseg.export.onnx_quantize import quantize_encoder_int8, quantize_onnx
from promptseg.export.onnxruntime_cache import prepare_cpu_engine, prepare_engine
from promptseg.export.onnxruntime_engine import OnnxRuntimeEngine
from promptseg.export.sam2_onnx import export_sam2_onnx_decoder, export_sam2_onnx_encoder

__all__ = [
    "EngineDecoder",
    "EngineImageEncoder",
    "EnginePredictor",
    "OnnxRuntimeEngine",
    "Sam2EngineDecoder",
    "Sam2EngineImageEncoder",
    "describe_onnx",
    "export_onnx_batched_decoder",
    "export_onnx_bundle",
    "export_onnx_decoder",
    "export_onnx_encoder",
    "export_sam2_onnx_decoder",
    "export_sam2_onnx_encoder",
    "prepare_cpu_engine",
    "prepare_engine",
    "quantize_encoder_int8",
    "quantize_onnx",
    "tensorrt_hazards",
]
