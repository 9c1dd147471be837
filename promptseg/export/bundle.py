"""Exporting a model's full set of ONNX graphs plus a JSON description of them (``promptseg export onnx``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch

from promptseg.export.onnx_common import DEFAULT_OPSET, PathLike, check_opset, describe_onnx
from promptseg.export.onnx_decoder import export_onnx_batched_decoder, export_onnx_decoder
from promptseg.export.onnx_encoder import export_onnx_encoder
from promptseg.export.onnx_quantize import quantize_onnx
from promptseg.modeling import Sam
from promptseg.version import __version__

DESCRIPTION_FILE = "export.json"
FORMAT_VERSION = 1
GRAPH_PURPOSES = {
    "encoder": "image encoder: normalised, zero-padded images -> image embeddings",
    "decoder": "drop-in for the official segment_anything ONNX decoder (SamOnnxModel)",
    "decoder_batched": "TensorRT-friendly decoder: P prompts on B images -> all 4 low-res masks and IoU per prompt",
    "decoder_quantized": "decoder.onnx with dynamic uint8 weights (the official --quantize-out)",
    "decoder_batched_quantized": "decoder_batched.onnx with dynamic uint8 weights",
}


def export_onnx_bundle(
    model: Sam,
    out_dir: PathLike,
    *,
    model_type: str,
    weights: Optional[str] = None,
    encoder_dtype: torch.dtype = torch.float32,
    quantize: bool = False,
    return_single_mask: bool = False,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """Write ``encoder.onnx``, ``decoder.onnx``, ``decoder_batched.onnx`` (and with ``quantize`` the
    quantised decoders) to ``out_dir``, with ``export.json`` describing them; return that description.

    The description holds the model type, where the weights came from, whether
    they are random, the opset, the encoder dtype and, per graph, its file,
    purpose, and inputs/outputs (names, shapes with named dynamic dims, dtypes).

    Args:
        model: the SAM to export; it is not modified.
        model_type: the registry name recorded in the description.
        weights: where the weights came from (a checkpoint path, "bundled", ...), None for random weights.
        encoder_dtype: precision of the encoder graph (float32, float16 or bfloat16).
        quantize: also write dynamically quantised copies of both decoders.
        return_single_mask: the official option of ``decoder.onnx``.
        opset: ONNX opset of all graphs.
    """
    check_opset(opset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / f"{name}.onnx" for name in ("encoder", "decoder", "decoder_batched")}
    export_onnx_encoder(model, files["encoder"], dtype=encoder_dtype, opset=opset)
    export_onnx_decoder(model, files["decoder"], return_single_mask=return_single_mask, opset=opset)
    export_onnx_batched_decoder(model, files["decoder_batched"], opset=opset)
    if quantize:
        for name in ("decoder", "decoder_batched"):
            files[f"{name}_quantized"] = out_dir / f"{name}_quantized.onnx"
            quantize_onnx(files[name], files[f"{name}_quantized"])
    description = {
        "format_version": FORMAT_VERSION,
        "promptseg_version": __version__,
        "model_type": model_type,
        "weights": weights if weights is not None else "random",
        "random_weights": weights is None,
        "opset": opset,
        "image_size": model.image_encoder.img_size,
        "encoder_dtype": str(encoder_dtype).removeprefix("torch."),
        "decoder_options": {"return_single_mask": return_single_mask},
        "graphs": {
            name: {"purpose": GRAPH_PURPOSES[name], **describe_onnx(path)} for name, path in files.items()
        },
    }
    (out_dir / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")
    return description
