"""ONNX export of SAM 2 / 2.1 image models (``promptseg.sam2``): the image encoder and a batched decoder.

* :func:`export_sam2_onnx_encoder`: normalised (B, 3, S, S) images (SAM 2's square frame, see
  ``promptseg.encoders.sam2``) -> the image embedding (with ``no_mem_embed``) and the two
  high-resolution feature levels the decoder adds in its upscaling (``SAM2Base.encode_image``).
* :func:`export_sam2_onnx_decoder`: P prompts (SAM 2's tokens: box corners, points, padding) on
  B images per call -> every mask token's low-res logits, IoU and the object score
  (``SAM2Base.decode_tokens``); the multimask choice (with SAM 2's dynamic fall-back) and the
  post-processing stay with the caller (:class:`promptseg.decoders.Sam2EngineDecoder`).

The official ``sam2`` package has no ONNX export, so there is no official file layout to match;
the decoder's inputs follow promptseg's batched SAM decoder (``decoder_batched.onnx``) plus the
two high-resolution levels. Both graphs have dynamic batch axes.
"""

from __future__ import annotations

import torch
from torch import nn

from promptseg.export.onnx_common import DEFAULT_OPSET, PathLike, check_opset, export_module, exportable_copy, model_device
from promptseg.export.onnx_decoder import PROMPT_INPUT_AXES, example_prompt_inputs
from promptseg.sam2.modeling.sam2_base import SAM2Base

SAM2_ENCODER_INPUTS = ("images",)
SAM2_ENCODER_OUTPUTS = ("image_embeddings", "high_res_feats_0", "high_res_feats_1")
SAM2_DECODER_INPUTS = (
    "image_embeddings",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "token_mask",
    "mask_input",
    "has_mask_input",
    "image_index",
)
SAM2_DECODER_OUTPUTS = ("low_res_masks", "iou_predictions", "object_score_logits")


class Sam2EncoderGraph(nn.Module):
    """(B, 3, S, S) normalised images -> (B, C, S/16, S/16) embeddings, (B, C/8, S/4, S/4) and
    (B, C/4, S/8, S/8) high-resolution features, all float32."""

    def __init__(self, model: SAM2Base) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embedding, (feat_s0, feat_s1) = self.model.encode_image(images.to(self.model.dtype))
        return embedding.float(), feat_s0.float(), feat_s1.float()


class Sam2DecoderGraph(nn.Module):
    """Decodes P prompts at once, each on one of B images; no multimask choice, no post-processing.

    Inputs (P prompts of T tokens, B images; all three dynamic):
        image_embeddings: (B, C, h, w) float32; high_res_feats_0: (B, C/8, 4h, 4w);
            high_res_feats_1: (B, C/4, 2h, 2w) (the encoder graph's outputs).
        point_coords: (P, T, 2) float32 token (x, y) in the S x S frame, by SAM 2's token rule.
        point_labels: (P, T) float32 in {-1, 0, 1, 2, 3}.
        token_mask: (P, T) bool, False for tokens that only pad a prompt to T.
        mask_input: (P, 1, 4h, 4w) float32 low-res logits; has_mask_input: (P,) float32 1 or 0.
        image_index: (P,) int64 in [0, B).
    Outputs:
        low_res_masks: (P, 4, 4h, 4w) float32 (0: single-mask output, 1..3: multimask outputs);
        iou_predictions: (P, 4) float32; object_score_logits: (P, 1) float32.
    """

    def __init__(self, model: SAM2Base) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        image_embeddings: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        token_mask: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        image_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        encoder = self.model.sam_prompt_encoder
        dtype = encoder.dtype
        masks, scores, _, object_scores = self.model.decode_tokens(
            image_embeddings.to(dtype),
            [high_res_feats_0.to(dtype), high_res_feats_1.to(dtype)],
            point_coords,
            point_labels,
            encoder.blended_dense_embeddings(mask_input, has_mask_input),
            image_index=image_index,
            token_padding_mask=token_mask,
        )
        return masks.float(), scores.float(), object_scores.float()


def export_sam2_onnx_encoder(
    model: SAM2Base, path: PathLike, *, dtype: torch.dtype = torch.float32, opset: int = DEFAULT_OPSET
) -> None:
    """Write the image encoder of a SAM 2 ``model`` to ``path`` (see :class:`Sam2EncoderGraph`); dynamic
    ``batch`` axis; weights in ``dtype`` (float32, float16 or bfloat16), inputs and outputs float32."""
    check_opset(opset)
    export_model = exportable_copy(model, dtype)
    side = export_model.image_size
    example = (torch.randn(1, 3, side, side, device=model_device(export_model)),)
    batch = {0: "batch"}
    export_module(
        Sam2EncoderGraph(export_model),
        example,
        path,
        input_names=SAM2_ENCODER_INPUTS,
        output_names=SAM2_ENCODER_OUTPUTS,
        dynamic_axes={name: batch for name in SAM2_ENCODER_INPUTS + SAM2_ENCODER_OUTPUTS},
        opset=opset,
    )


def export_sam2_onnx_decoder(
    model: SAM2Base, path: PathLike, *, dtype: torch.dtype = torch.float32, opset: int = DEFAULT_OPSET
) -> None:
    """Write the batched decoder of a SAM 2 ``model`` to ``path`` (see :class:`Sam2DecoderGraph`).

    Dynamic axes: ``num_images`` (B), ``num_prompts`` (P), ``num_points`` (T).
    """
    check_opset(opset)
    export_model = exportable_copy(model, dtype)
    device = model_device(export_model)
    encoder = export_model.sam_prompt_encoder
    embed_dim = encoder.embed_dim
    grid_h, grid_w = encoder.image_embedding_size
    mask_h, mask_w = encoder.mask_input_size
    side = export_model.image_size
    images = 2
    mask_tokens = export_model.sam_mask_decoder.num_mask_tokens
    example = (
        torch.randn(images, embed_dim, grid_h, grid_w, device=device),
        torch.randn(images, embed_dim // 8, 4 * grid_h, 4 * grid_w, device=device),
        torch.randn(images, embed_dim // 4, 2 * grid_h, 2 * grid_w, device=device),
    ) + example_prompt_inputs(side, (mask_h, mask_w), device)
    prompt_axis = {0: "num_prompts"}
    image_axis = {0: "num_images"}
    export_module(
        Sam2DecoderGraph(export_model),
        example,
        path,
        input_names=SAM2_DECODER_INPUTS,
        output_names=SAM2_DECODER_OUTPUTS,
        dynamic_axes={
            "image_embeddings": image_axis,
            "high_res_feats_0": image_axis,
            "high_res_feats_1": image_axis,
            **PROMPT_INPUT_AXES,
            **{name: prompt_axis for name in SAM2_DECODER_OUTPUTS},
        },
        opset=opset,
        output_shapes={
            "low_res_masks": ["num_prompts", mask_tokens, mask_h, mask_w],
            "iou_predictions": ["num_prompts", mask_tokens],
            "object_score_logits": ["num_prompts", 1],
        },
    )
