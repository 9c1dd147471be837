"""Point prompts to scored, boxed masks, through promptseg's fused CUDA path when it applies.

On a CUDA bf16/fp16 model with the compiled kernels, points are decoded as
``SamPredictor`` decodes batches there (:mod:`promptseg.fast_path`: the first
two-way block's image-side work computed once per crop, prompts reading it
through an index) and masks are measured by the one-pass post-processing kernel
(:func:`promptseg.ops.mask_postprocess`), which never writes full-size logits.
Elsewhere the model's own modules run, as in the official generator.
"""

from __future__ import annotations

from typing import Optional

import torch

from promptseg.amg.filters import stability_score
from promptseg.fast_path import ImageTable, decode_masks, fused_path_available, image_table, select_outputs
from promptseg.modeling import Sam
from promptseg.ops import mask_postprocess
from promptseg.ops.dispatch import kernel_for
from promptseg.postprocess import mask_boxes_xyxy


def crop_table(model: Sam, features: torch.Tensor) -> Optional[ImageTable]:
    """The fused path's per-image table of (B, C, H, W) crop embeddings, or None where that path does not apply."""
    return image_table(model, features) if fused_path_available(model, features) else None


def decode_points(
    model: Sam, features: torch.Tensor, table: Optional[ImageTable], row: int, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one foreground click per prompt on crop ``row``, with the three multimask outputs.

    Args:
        features: (B, C, H, W) crop embeddings; ``table`` their :func:`crop_table`.
        points: (P, 2) float (x, y) in the encoder's input frame.
    Returns:
        (P, 3, 4H, 4W) low-res mask logits and (P, 3) IoU predictions, in the model dtype.
    """
    labels = torch.ones(len(points), 1, dtype=torch.int, device=points.device)
    sparse, dense = model.prompt_encoder(points=(points[:, None], labels), boxes=None, masks=None)
    if table is not None:
        rows = torch.full((len(points),), row, dtype=torch.long, device=points.device)
        return select_outputs(*decode_masks(model, table, rows, sparse), multimask_output=True)
    return model.mask_decoder(
        image_embeddings=features[row : row + 1],
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )


def measure_masks(
    model: Sam,
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    stability_offset: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes and stability scores of masks at the crop's full size.

    Args:
        low_res: (P, M, S, S) low-res logits of a crop.
        input_size: (h, w) of the crop resized for the encoder; original_size: (H, W) of the crop.
    Returns:
        (P * M, 4) int64 inclusive XYXY boxes of the masks (logits > ``mask_threshold``) and
        (P * M,) float32 stability scores.
    """
    threshold, side = model.mask_threshold, model.image_encoder.img_size
    if kernel_for("mask_postprocess", low_res) is not None:
        # Three passes of the kernel (masks, and the areas at either stability cut-off) cost less than
        # one full-size float32 logit tensor.
        boxes = mask_postprocess(low_res, input_size, original_size, side, threshold, with_stats=True).boxes
        inner, outer = (
            mask_postprocess(low_res, input_size, original_size, side, cut, with_stats=True).areas
            for cut in (threshold + stability_offset, threshold - stability_offset)
        )
        return boxes.flatten(0, 1), (inner / outer).flatten(0, 1)
    logits = model.postprocess_masks(low_res, input_size, original_size).flatten(0, 1)
    return mask_boxes_xyxy(logits > threshold), stability_score(logits, threshold, stability_offset)


def full_size_masks(
    model: Sam, low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """(M, S, S) low-res logits of a crop -> (M, H, W) bool masks at the crop's size (logits > ``mask_threshold``)."""
    side = model.image_encoder.img_size
    return mask_postprocess(low_res[:, None], input_size, original_size, side, model.mask_threshold).masks[:, 0]
