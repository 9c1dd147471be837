"""Point prompts to scored, boxed masks, through the generator's :class:`promptseg.decoders.Decoder`.

Decoding and measuring are the decoder's business (``Decoder.decode``, ``Decoder.measure``): the
default decoder takes promptseg's fused path on a CUDA bf16/fp16 model with the kernels, and
measures masks with the one-pass post-processing kernel where it runs; elsewhere masks are
measured from full-size float32 logits, as the official generator does.
"""

from __future__ import annotations

import torch

from promptseg.decoders import Decoder
from promptseg.prompts.batch import tensor_prompt_batch
from promptseg.prompts.tokens import FOREGROUND


def decode_points(
    decoder: Decoder, features: torch.Tensor, row: int, points: torch.Tensor, multimask_output: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one foreground click per prompt on image (crop) ``row``, with the three multimask outputs
    (or the single-mask output).

    Args:
        features: (B, C, H, W) crop embeddings (or a SAM 2 decoder's ``MultiScaleFeatures``).
        points: (P, 2) float (x, y) in the encoder's input frame.
    Returns:
        (P, 3 or 1, 4H, 4W) low-res mask logits and (P, 3 or 1) IoU predictions, in the model dtype.
    """
    labels = torch.full((len(points), 1), FOREGROUND, dtype=torch.long, device=points.device)
    batch = tensor_prompt_batch(points[:, None], labels, None, None, decoder.token_rule)
    return decoder.decode(features, batch, [row] * len(points), multimask_output=multimask_output)


def refine_points(
    decoder: Decoder,
    features: torch.Tensor,
    row: int,
    points: torch.Tensor,
    low_res: torch.Tensor,
    batch_size: int,
    logit_clamp: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM 2's mask-to-mask refinement: each of the M masks of each point decoded again, with the
    click and its own low-res logits (clamped to +-``logit_clamp``) as mask input, single-mask output;
    ``batch_size`` masks at a time.

    Args:
        points: (P, 2) the clicks of :func:`decode_points`; low_res: its (P, M, S, S) logits.
    Returns:
        (P * M, 1, S, S) refined low-res logits and (P * M, 1) IoU, mask order as ``low_res.flatten(0, 1)``.
    """
    per_mask = points.repeat_interleave(low_res.shape[1], dim=0)
    mask_inputs = low_res.flatten(0, 1).clamp(-logit_clamp, logit_clamp)[:, None]
    labels = torch.full((len(per_mask), 1), FOREGROUND, dtype=torch.long, device=points.device)
    outputs = []
    for first in range(0, len(per_mask), batch_size):
        chunk = slice(first, first + batch_size)
        batch = tensor_prompt_batch(per_mask[chunk, None], labels[chunk], None, mask_inputs[chunk], decoder.token_rule)
        outputs.append(decoder.decode(features, batch, [row] * len(batch.labels), multimask_output=False))
    return torch.cat([masks for masks, _ in outputs]), torch.cat([iou for _, iou in outputs])


def measure_masks(
    decoder: Decoder,
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    image_size: int,
    threshold: float,
    stability_offset: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes and stability scores of masks at the crop's full size: :meth:`Decoder.measure`.

    Args:
        low_res: (P, M, S, S) low-res logits of a crop.
        input_size: (h, w) of the crop resized for the encoder; original_size: (H, W) of the crop.
        image_size: side of the encoder's padded frame; threshold: the model's mask threshold.
    Returns:
        (P * M, 4) int64 inclusive XYXY boxes of the masks (logits > ``threshold``) and
        (P * M,) float32 stability scores.
    """
    return decoder.measure(low_res, input_size, original_size, image_size, threshold, stability_offset)
