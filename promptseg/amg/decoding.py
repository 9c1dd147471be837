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
