"""``OnnxRuntimeEngine`` lives in :mod:`promptseg.encoders.onnxruntime` (beside the ONNX Runtime image
encoder); this module keeps its old import path."""

from promptseg.encoders.onnxruntime import OnnxRuntimeEngine

__all__ = ["OnnxRuntimeEngine"]
