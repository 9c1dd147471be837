"""Point prompts to scored, boxed masks, through the generator's :class:`promptseg.decoders.Decoder`.

Decoding is the decoder's business (the default takes promptseg's fused path on a CUDA bf16/fp16
model with the kernels). Measuring masks takes three passes of the one-pass post-processing
kernel where that kernel runs (it never writes full-size logits), and full-size float32 logits
elsewhere, as the official generator does.
"""

from __future__ import annotations

import torch

from promptseg.decoders import Decoder
from promptseg.masks import mask_boxes_xyxy, stability_score
from promptseg.ops import kernel_available, mask_postprocess
from promptseg.prompts.batch import tensor_prompt_batch
from promptseg.prompts.tokens import FOREGROUND


def decode_points(
    decoder: Decoder, features: torch.Tensor, row: int, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one foreground click per prompt on image (crop) ``row``, with the three multimask outputs.

    Args:
        features: (B, C, H, W) crop embeddings.
        points: (P, 2) float (x, y) in the encoder's input frame.
    Returns:
        (P, 3, 4H, 4W) low-res mask logits and (P, 3) IoU predictions, in the model dtype.
    """
    labels = torch.full((len(points), 1), FOREGROUND, dtype=torch.long, device=points.device)
    batch = tensor_prompt_batch(points[:, None], labels, None, None)
    return decoder.decode(features, batch, [row] * len(points), multimask_output=True)


def measure_masks(
    decoder: Decoder,
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    image_size: int,
    threshold: float,
    stability_offset: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes and stability scores of masks at the crop's full size.

    Args:
        low_res: (P, M, S, S) low-res logits of a crop.
        input_size: (h, w) of the crop resized for the encoder; original_size: (H, W) of the crop.
        image_size: side of the encoder's padded frame; threshold: the model's mask threshold.
    Returns:
        (P * M, 4) int64 inclusive XYXY boxes of the masks (logits > ``threshold``) and
        (P * M,) float32 stability scores.
    """
    if kernel_available("mask_postprocess", low_res, backend=decoder.backend):
        # Three passes of the kernel (masks, and the areas at either stability cut-off) cost less than
        # one full-size float32 logit tensor.
        boxes = mask_postprocess(low_res, input_size, original_size, image_size, threshold, with_stats=True).boxes
        inner, outer = (
            mask_postprocess(low_res, input_size, original_size, image_size, cut, with_stats=True).areas
            for cut in (threshold + stability_offset, threshold - stability_offset)
        )
        return boxes.flatten(0, 1), (inner / outer).flatten(0, 1)
    logits = decoder.postprocess(low_res, input_size, original_size, image_size, threshold, True).flatten(0, 1)
    return mask_boxes_xyxy(logits > threshold), stability_score(logits, threshold, stability_offset)
