"""ONNX export of SAM's prompt encoder + mask decoder, in two forms.

* :func:`export_onnx_decoder`: a drop-in for the file the official
  ``scripts/export_onnx_model.py`` writes from ``SamOnnxModel``: the same
  inputs, outputs, dynamic axes and options, so web demos and C++ clients
  built for the official ``.onnx`` run unchanged. The module it traces,
  :class:`OfficialCompatibleDecoder`, is also the official ``SamOnnxModel``
  (:mod:`promptseg.utils.onnx`), for code that runs the official script's export.
* :func:`export_onnx_batched_decoder`: a TensorRT-friendly graph that decodes
  P prompts (on any of B images) per call and returns low-resolution logits:
  no shape is computed from an input's values, and the image embedding is
  gathered per prompt instead of ``repeat_interleave``-d (which exports as
  OneHot + Tile).

Both run the model's one module-level decode, :meth:`promptseg.modeling.Sam.decode_tokens`
(prompt encoder ``embed_tokens``, then ``MaskDecoder.predict_masks``), with the dense embeddings
blended by ``has_mask_input`` as the official export does
(:meth:`promptseg.modeling.PromptEncoder.blended_dense_embeddings`).
"""

from __future__ import annotations

import torch
from torch import nn

from promptseg.export.onnx_common import (
    DEFAULT_OPSET,
    PathLike,
    check_opset,
    export_module,
    exportable_copy,
    model_device,
    resized_size,
)
from promptseg.masks import stability_score
from promptseg.modeling import Sam

DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
DECODER_EXTRA_METRICS_OUTPUTS = ("masks", "iou_predictions", "stability_scores", "areas", "low_res_masks")
BATCHED_DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "token_mask",
    "mask_input",
    "has_mask_input",
    "image_index",
)
BATCHED_DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")
STABILITY_SCORE_OFFSET = 1.0
"""The official export's offset of the stability score thresholds around ``mask_threshold``."""
MULTIMASK_SWITCH_WEIGHT = 1000.0
"""The official single-mask selection: add this times (num_points - 2.5) to the first mask's score."""


class OfficialCompatibleDecoder(nn.Module):
    """The official ``SamOnnxModel`` on promptseg's modules: its constructor, attributes, public
    methods, inputs and outputs (``promptseg.utils.onnx.SamOnnxModel`` is this class).

    Inputs (shapes as in the official export; N is dynamic):
        image_embeddings: (1, C, h, w) float32.
        point_coords: (1, N, 2) float32 (x, y) in the resized image frame
            (longest side = S), e.g. from ``ResizeLongestSide.apply_coords``.
        point_labels: (1, N) float32 in {-1, 0, 1, 2, 3}: padding point,
            background, foreground, box top-left, box bottom-right.
        mask_input: (1, 1, 4h, 4w) float32 low-res logits of a previous prediction.
        has_mask_input: (1,) float32, 1 to use ``mask_input``, 0 to ignore it.
        orig_im_size: (2,) float32 (H, W) of the original image.
    Outputs:
        masks: (1, M, H, W) float32 logits at the original size.
        iou_predictions: (1, M) float32 (stability scores with ``use_stability_score``).
        low_res_masks: (1, M, 4h, 4w) float32 logits.
    M = 1 with ``return_single_mask`` (the multimask output for one click,
    the single-mask output for more), else 4 (single mask, then the three
    multimask outputs). ``return_extra_metrics`` adds, after
    ``iou_predictions``, ``stability_scores`` (1, M) float32 and ``areas``
    (1, M) int64 of the full-size masks.

    Unlike the official graph, the crop of the padding is computed from
    ``orig_im_size``, so an exported graph is right for any aspect ratio.
    """

    def __init__(
        self,
        model: Sam,
        return_single_mask: bool,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
    ) -> None:
        super().__init__()
        self.mask_decoder = model.mask_decoder
        self.model = model
        self.img_size = model.image_encoder.img_size
        self.return_single_mask = return_single_mask
        self.use_stability_score = use_stability_score
        self.stability_score_offset = STABILITY_SCORE_OFFSET
        self.return_extra_metrics = return_extra_metrics

    @staticmethod
    def resize_longest_image_size(input_image_size: torch.Tensor, longest_side: int) -> torch.Tensor:
        """(2,) (H, W) -> (2,) int64 size with the longest side scaled to ``longest_side``, rounded half up."""
        return resized_size(input_image_size.to(torch.int64), longest_side)

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """(P, M, h, w) low-res logits -> (P, M, H, W) float32 logits at ``orig_im_size`` (2,) = (H, W)."""
        original_size = orig_im_size.to(torch.int64)
        input_size = self.resize_longest_image_size(original_size, self.img_size)
        return self.model.postprocess_masks(masks, input_size, original_size)

    def select_masks(
        self, masks: torch.Tensor, iou_preds: torch.Tensor, num_points: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The official single-mask choice without control flow: the best multimask output when
        fewer than 3 points are given (one click + the padding point), else the single-mask output.

        (P, 4, h, w) masks and (P, 4) scores -> (P, 1, h, w) and (P, 1).
        """
        weights = [MULTIMASK_SWITCH_WEIGHT] + [0.0] * (int(iou_preds.shape[1]) - 1)
        first_only = torch.tensor(weights, dtype=iou_preds.dtype, device=iou_preds.device)
        best = torch.argmax(iou_preds + (num_points - 2.5) * first_only, dim=1, keepdim=True)
        selected_masks = masks.gather(1, best[:, :, None, None].expand(-1, -1, masks.shape[2], masks.shape[3]))
        return selected_masks, iou_preds.gather(1, best)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        model = self.model
        threshold = model.mask_threshold
        dense = model.prompt_encoder.blended_dense_embeddings(mask_input, has_mask_input)
        image_index = point_labels.new_zeros(point_labels.shape[0], dtype=torch.long)
        masks, scores = model.decode_tokens(image_embeddings, point_coords, point_labels, dense, image_index)
        if self.use_stability_score:
            scores = stability_score(masks, threshold, self.stability_score_offset)
        if self.return_single_mask:
            masks, scores = self.select_masks(masks, scores, point_coords.shape[1])
        upscaled = self.mask_postprocessing(masks, orig_im_size)
        if self.return_extra_metrics:
            areas = (upscaled > threshold).sum(-1).sum(-1)
            return upscaled, scores, stability_score(upscaled, threshold, self.stability_score_offset), areas, masks
        return upscaled, scores, masks


class BatchedDecoder(nn.Module):
    """Decodes P prompts at once, each on one of B image embeddings; no post-processing.

    Inputs (P prompts of T tokens, B images; all three dynamic):
        image_embeddings: (B, C, h, w) float32.
        point_coords: (P, T, 2) float32 token (x, y) in the resized image frame.
        point_labels: (P, T) float32 in {-1, 0, 1, 2, 3}, as in the official decoder.
        token_mask: (P, T) bool, False for tokens that only pad a prompt to T
            (never attended to, unlike label -1 tokens).
        mask_input: (P, 1, 4h, 4w) float32 low-res logits.
        has_mask_input: (P,) float32, 1 to use the prompt's ``mask_input``, 0 to ignore it.
        image_index: (P,) int64 in [0, B), the image of each prompt.
    Outputs:
        low_res_masks: (P, 4, 4h, 4w) float32 logits: index 0 is the
            single-mask output, 1..3 the multimask outputs.
        iou_predictions: (P, 4) float32.
    Upscaling to the original image is left to the caller (e.g.
    ``Sam.postprocess_masks``), so no shape depends on input values.
    """

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        token_mask: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        image_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        prompt_encoder = self.model.prompt_encoder
        masks, scores = self.model.decode_tokens(
            image_embeddings.to(prompt_encoder.dtype),
            point_coords,
            point_labels,
            prompt_encoder.blended_dense_embeddings(mask_input, has_mask_input),
            image_index=image_index,
            token_padding_mask=token_mask,
        )
        return masks.float(), scores.float()


def export_onnx_decoder(
    model: Sam,
    path: PathLike,
    *,
    return_single_mask: bool = False,
    use_stability_score: bool = False,
    return_extra_metrics: bool = False,
    opset: int = DEFAULT_OPSET,
) -> None:
    """Write the official-compatible decoder of ``model`` to ``path`` (see :class:`OfficialCompatibleDecoder`).

    The inputs, outputs, dtypes and the dynamic ``num_points`` axis are those of
    the official ``export_onnx_model.py``, and the three options mean what they
    mean there:

    Args:
        return_single_mask: output one mask per call, chosen as the official export does.
        use_stability_score: replace the predicted IoU by the mask's stability score.
        return_extra_metrics: also output stability scores and areas of the full-size
            masks. The official script names its outputs by position with three
            names only, so there the third output (the stability scores) is called
            ``low_res_masks``; here the five outputs, in the same order, are
            ``masks, iou_predictions, stability_scores, areas, low_res_masks``.
        opset: ONNX opset, 17..20.
    """
    check_opset(opset)
    export_model = exportable_copy(model)
    device = model_device(export_model)
    embed_dim = export_model.prompt_encoder.embed_dim
    grid_h, grid_w = export_model.prompt_encoder.image_embedding_size
    mask_h, mask_w = export_model.prompt_encoder.mask_input_size
    side = export_model.image_encoder.img_size
    example = (
        torch.randn(1, embed_dim, grid_h, grid_w, device=device),
        torch.randint(0, side, (1, 5, 2), device=device).float(),
        torch.randint(0, 4, (1, 5), device=device).float(),
        torch.randn(1, 1, mask_h, mask_w, device=device),
        torch.ones(1, device=device),
        torch.tensor([1500.0, 2250.0], device=device),
    )
    module = OfficialCompatibleDecoder(export_model, return_single_mask, use_stability_score, return_extra_metrics)
    export_module(
        module,
        example,
        path,
        input_names=DECODER_INPUTS,
        output_names=DECODER_EXTRA_METRICS_OUTPUTS if return_extra_metrics else DECODER_OUTPUTS,
        dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
        opset=opset,
    )


PROMPT_INPUT_AXES = {
    "point_coords": {0: "num_prompts", 1: "num_points"},
    "point_labels": {0: "num_prompts", 1: "num_points"},
    "token_mask": {0: "num_prompts", 1: "num_points"},
    "mask_input": {0: "num_prompts"},
    "has_mask_input": {0: "num_prompts"},
    "image_index": {0: "num_prompts"},
}
"""The dynamic axes of the prompt inputs of the batched decoder graphs (SAM's and SAM 2's)."""


def example_prompt_inputs(
    side: int, mask_size: tuple[int, int], device: torch.device, prompts: int = 3, tokens: int = 4
) -> tuple[torch.Tensor, ...]:
    """Example prompt inputs of the batched decoder graphs, in the order of :data:`PROMPT_INPUT_AXES`:
    (P, T, 2) coordinates in an S x S frame, (P, T) float labels, (P, T) bool token mask,
    (P, 1, h, w) mask inputs, (P,) has-mask flags and (P,) image indices (all 0)."""
    return (
        torch.rand(prompts, tokens, 2, device=device) * side,
        torch.randint(-1, 4, (prompts, tokens), device=device).float(),
        torch.ones(prompts, tokens, dtype=torch.bool, device=device),
        torch.randn(prompts, 1, *mask_size, device=device),
        torch.ones(prompts, device=device),
        torch.zeros(prompts, dtype=torch.long, device=device),
    )


def export_onnx_batched_decoder(
    model: Sam, path: PathLike, *, dtype: torch.dtype = torch.float32, opset: int = DEFAULT_OPSET
) -> None:
    """Write the TensorRT-friendly batched decoder of ``model`` to ``path`` (see :class:`BatchedDecoder`).

    Dynamic axes: ``num_images`` (B), ``num_prompts`` (P), ``num_points`` (T).

    Args:
        dtype: precision of the weights and matmuls (float32, float16 or
            bfloat16); LayerNorm and softmax statistics stay float32, inputs and
            outputs float32.
        opset: ONNX opset, 17..20.
    """
    check_opset(opset)
    export_model = exportable_copy(model, dtype)
    device = model_device(export_model)
    embed_dim = export_model.prompt_encoder.embed_dim
    grid_h, grid_w = export_model.prompt_encoder.image_embedding_size
    mask_h, mask_w = export_model.prompt_encoder.mask_input_size
    side = export_model.image_encoder.img_size
    mask_tokens = export_model.mask_decoder.num_mask_tokens
    example = (torch.randn(2, embed_dim, grid_h, grid_w, device=device),) + example_prompt_inputs(
        side, (mask_h, mask_w), device
    )
    prompt_axis = {0: "num_prompts"}
    export_module(
        BatchedDecoder(export_model),
        example,
        path,
        input_names=BATCHED_DECODER_INPUTS,
        output_names=BATCHED_DECODER_OUTPUTS,
        dynamic_axes={
            "image_embeddings": {0: "num_images"},
            **PROMPT_INPUT_AXES,
            "low_res_masks": prompt_axis,
            "iou_predictions": prompt_axis,
        },
        opset=opset,
        output_shapes={
            "low_res_masks": ["num_prompts", mask_tokens, mask_h, mask_w],
            "iou_predictions": ["num_prompts", mask_tokens],
        },
    )
