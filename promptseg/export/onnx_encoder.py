"""ONNX export of SAM's image encoder, optionally with the image preprocessing inside the graph.

The graph reuses the model's own layers; only the attention runs in its export
form, ``promptseg.ops.vit_attention_reference(..., export=True)`` (no chunking
loop, no in-place padding, no einsum), the form that ONNX Runtime and TensorRT's
parser both take:

* windowed layers pad the qkv grid (a Pad, then the qkv bias added on the
  padded tokens), then attend per window, with every size but the batch a
  constant of the graph;
* the decomposed relative position bias is two batched matmuls;
* softmax and LayerNorm statistics are float32 whatever the export dtype.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Union

import torch
from torch import nn
from torch.nn import functional as F

from promptseg.export.onnx_common import (
    DEFAULT_OPSET,
    PathLike,
    export_module,
    exportable_copy,
    model_device,
    resized_size,
)
from promptseg.modeling import Sam
from promptseg.modeling.image_encoder import Attention, Block, ImageEncoderViT
from promptseg.ops import vit_attention_reference

ENCODER_INPUT = "images"
PREPROCESSING_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"
ONNX_INT64 = 7  # onnx.TensorProto.INT64


class ExportableImageEncoder(nn.Module):
    """(B, 3, S, S) float32 normalised, padded images -> (B, C, h, w) float32 embeddings, h = w = S / patch size.

    Computes in the dtype of ``encoder``'s weights; the input is cast to it and
    the output back to float32, so the graph's interface is float32 for any
    export precision.
    """

    def __init__(self, encoder: ImageEncoderViT) -> None:
        super().__init__()
        self.encoder = encoder
        self.compute_dtype = encoder.blocks[0].attn.qkv.weight.dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        encoder = self.encoder
        x = encoder.patch_embed(images.to(self.compute_dtype))
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        for block in encoder.blocks:
            x = _block(block, x)
        return encoder.neck(x.permute(0, 3, 1, 2)).float()


class PreprocessingImageEncoder(nn.Module):
    """(H, W, 3) uint8 RGB image of any size -> (1, C, h, w) float32 embedding.

    In the graph: resize so that the longer side is S (bilinear with
    antialiasing, rounded to uint8 like the PIL resize of ``SamPredictor``),
    normalise with the model's pixel mean and std, zero-pad to (S, S), encode.
    """

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.model = model
        self.encoder = ExportableImageEncoder(model.image_encoder)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = torch.stack([torch.as_tensor(image.shape[0]), torch.as_tensor(image.shape[1])])
        new_height, new_width = resized_size(size, self.model.image_encoder.img_size)
        chw = image.permute(2, 0, 1)[None].float()
        resized = F.interpolate(chw, size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=True)
        resized = resized.round().clamp(0, 255)
        return self.encoder(self.model.preprocess(resized[0])[None].float())


def export_onnx_encoder(
    model: Sam,
    path: PathLike,
    *,
    batch: Union[str, int] = "dynamic",
    dtype: torch.dtype = torch.float32,
    opset: int = DEFAULT_OPSET,
    include_preprocessing: bool = False,
) -> None:
    """Write the image encoder of ``model`` to ``path`` as ONNX.

    Without preprocessing the graph maps input ``images`` (B, 3, S, S) float32,
    normalised and zero-padded as by ``Sam.preprocess`` (S =
    ``model.image_encoder.img_size``, 1024 for the official models), to output
    ``image_embeddings`` (B, C, h, h) float32: C = 256 and h = S / 16 = 64 for
    the official models.

    With ``include_preprocessing=True`` the graph takes ``image``: one
    (H, W, 3) uint8 RGB image of any size (both dims dynamic), and does the
    resize, normalisation and padding itself; the output is (1, C, h, h).

    Args:
        model: the SAM whose encoder to export; it is not modified. The graph
            is traced on the model's device (a GPU traces a float16 or
            bfloat16 vit_h in seconds, a CPU in many minutes).
        path: the .onnx file. Weights over 2 GiB (vit_h in float32) go to
            ``<path>.data`` beside it.
        batch: "dynamic" for a dynamic batch axis named ``batch``, or a fixed
            batch size (ignored with preprocessing, which takes one image).
        dtype: precision of the weights and matmuls: torch.float32,
            torch.float16 or torch.bfloat16. LayerNorm and softmax statistics
            are computed in float32 in every case; inputs and outputs stay float32.
        opset: ONNX opset, 17..20 (18 or later with preprocessing: antialiased Resize).
        include_preprocessing: put resize, normalisation and padding in the graph.
    """
    if batch != "dynamic" and not (isinstance(batch, int) and batch >= 1):
        raise ValueError(f"batch must be 'dynamic' or a positive int, got {batch!r}")
    if include_preprocessing and opset < 18:
        raise ValueError(f"include_preprocessing needs opset >= 18 (Resize with antialiasing), got opset={opset}")
    export_model = exportable_copy(model, dtype)
    device = model_device(export_model)
    side = export_model.image_encoder.img_size
    if include_preprocessing:
        module: nn.Module = PreprocessingImageEncoder(export_model)
        example = torch.randint(0, 256, (side * 3 // 4, side // 2, 3), dtype=torch.uint8, device=device)
        input_name = PREPROCESSING_INPUT
        dynamic_axes = {input_name: {0: "height", 1: "width"}}
        output_batch: Union[str, int] = 1
    else:
        module = ExportableImageEncoder(export_model.image_encoder)
        example = torch.randn(1 if batch == "dynamic" else batch, 3, side, side, device=device)
        input_name = ENCODER_INPUT
        dynamic_axes = {input_name: {0: "batch"}, ENCODER_OUTPUT: {0: "batch"}} if batch == "dynamic" else {}
        output_batch = "batch" if batch == "dynamic" else batch
    grid_h, grid_w = export_model.prompt_encoder.image_embedding_size
    output_shape = [output_batch, export_model.prompt_encoder.embed_dim, grid_h, grid_w]
    with _antialiased_resize_exportable(include_preprocessing):
        export_module(
            module,
            (example,),
            path,
            input_names=[input_name],
            output_names=[ENCODER_OUTPUT],
            dynamic_axes=dynamic_axes,
            opset=opset,
            output_shapes={ENCODER_OUTPUT: output_shape},
        )


_ANTIALIASED_BILINEAR = "aten::_upsample_bilinear2d_aa"


@contextlib.contextmanager
def _antialiased_resize_exportable(enabled: bool) -> Iterator[None]:
    """While active (and ``enabled``), export antialiased bilinear interpolation as an ONNX
    Resize with ``antialias=1`` (opset 18), which the TorchScript exporter has no rule for."""
    if not enabled:
        yield
        return
    torch.onnx.register_custom_op_symbolic(_ANTIALIASED_BILINEAR, _antialiased_resize_symbolic, 18)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic(_ANTIALIASED_BILINEAR, 18)


def _antialiased_resize_symbolic(
    graph: Any, image: Any, output_size: Any, align_corners: Any, scale_factors: Any
) -> Any:
    """ONNX for ``F.interpolate(image, size=output_size, mode="bilinear", antialias=True, align_corners=False)``.

    ``exclude_outside`` renormalises the filter at the borders, as PIL and PyTorch do.
    """
    leading_dims = graph.op(
        "Slice",
        graph.op("Shape", image),
        graph.op("Constant", value_t=torch.tensor([0])),
        graph.op("Constant", value_t=torch.tensor([2])),
    )
    sizes = graph.op("Concat", leading_dims, graph.op("Cast", output_size, to_i=ONNX_INT64), axis_i=0)
    no_roi = graph.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
    no_scales = graph.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
    return graph.op(
        "Resize",
        image,
        no_roi,
        no_scales,
        sizes,
        mode_s="linear",
        coordinate_transformation_mode_s="half_pixel",
        antialias_i=1,
        exclude_outside_i=1,
    )


def _block(block: Block, x: torch.Tensor) -> torch.Tensor:
    """One encoder block on a (B, H, W, C) grid, as ``Block.forward``."""
    x = x + block.attn.proj(_attention(block.attn, block.norm1(x)))
    return x + block.mlp(block.norm2(x))


def _attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Self-attention of ``attn`` on a (B, H, W, C) grid before the output projection; (B, H, W, C)."""
    rel_pos_h = attn.rel_pos_h if attn.use_rel_pos else None
    rel_pos_w = attn.rel_pos_w if attn.use_rel_pos else None
    args = (attn.qkv(x), attn.num_heads, rel_pos_h, rel_pos_w, attn.window_size, attn.qkv.bias)
    return vit_attention_reference(*args, export=True)
