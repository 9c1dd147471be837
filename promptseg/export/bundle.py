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
from promptseg.export.sam2_onnx import export_sam2_onnx_decoder, export_sam2_onnx_encoder
from promptseg.modeling import Sam
from promptseg.sam2.modeling.sam2_base import SAM2Base
from promptseg.version import __version__

DESCRIPTION_FILE = "export.json"
FORMAT_VERSION = 1
GRAPH_PURPOSES = {
    "sam2_encoder": "SAM 2 image encoder: normalised S x S images -> image embeddings and two high-resolution levels",
    "sam2_decoder_batched": "SAM 2 decoder: P prompts on B images -> all 4 low-res masks, IoU and the object score per prompt",
    "sam2_decoder_batched_quantized": "decoder_batched.onnx with dynamic uint8 weights",
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

    A SAM 2 model (``promptseg.sam2``) gets ``encoder.onnx`` and ``decoder_batched.onnx`` of
    :mod:`promptseg.export.sam2_onnx` (the official ``sam2`` has no ONNX decoder to be compatible
    with, so there is no ``decoder.onnx``; ``return_single_mask`` does not apply).
    """
    check_opset(opset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, SAM2Base):
        if return_single_mask:
            raise ValueError("return_single_mask is an option of the official SAM decoder graph; SAM 2 has none")
        return _export_sam2_bundle(model, out_dir, model_type, weights, encoder_dtype, quantize, opset)
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


def _export_sam2_bundle(
    model: SAM2Base,
    out_dir: Path,
    model_type: str,
    weights: Optional[str],
    encoder_dtype: torch.dtype,
    quantize: bool,
    opset: int,
) -> dict[str, Any]:
    """:func:`export_onnx_bundle` for a SAM 2 model: ``encoder.onnx``, ``decoder_batched.onnx`` (and its
    quantised copy), ``export.json``."""
    files = {"encoder": out_dir / "encoder.onnx", "decoder_batched": out_dir / "decoder_batched.onnx"}
    export_sam2_onnx_encoder(model, files["encoder"], dtype=encoder_dtype, opset=opset)
    export_sam2_onnx_decoder(model, files["decoder_batched"], opset=opset)
    if quantize:
        files["decoder_batched_quantized"] = out_dir / "decoder_batched_quantized.onnx"
        quantize_onnx(files["decoder_batched"], files["decoder_batched_quantized"])
    description = {
        "format_version": FORMAT_VERSION,
        "promptseg_version": __version__,
        "model_type": model_type,
        "model_family": "sam2",
        "weights": weights if weights is not None else "random",
        "random_weights": weights is None,
        "opset": opset,
        "image_size": model.image_size,
        "encoder_dtype": str(encoder_dtype).removeprefix("torch."),
        "decoder_options": {},
        "graphs": {
            name: {"purpose": GRAPH_PURPOSES[f"sam2_{name}"], **describe_onnx(path)} for name, path in files.items()
        },
    }
    (out_dir / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")
    return description
