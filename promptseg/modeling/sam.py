"""The Segment Anything model: image encoder + prompt encoder + mask decoder, with pre/post-processing."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from promptseg.modeling.image_encoder import ImageEncoderViT
from promptseg.modeling.mask_decoder import MaskDecoder
from promptseg.modeling.prompt_encoder import PromptEncoder
from promptseg.ops import upscale_mask_logits


class Sam(nn.Module):
    """SAM; module names, buffers and methods follow ``segment_anything.modeling.Sam``."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: list[float] = [123.675, 116.28, 103.53],
        pixel_std: list[float] = [58.395, 57.12, 57.375],
    ) -> None:
        """
        Args:
            image_encoder, prompt_encoder, mask_decoder: the three networks.
            pixel_mean, pixel_std: per-channel normalisation of 0..255 RGB input.
        """
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "Sam":
        # The normalisation constants stay float32 (123.675 is 123.5 in bf16); only their device follows.
        constants = {"pixel_mean": self.pixel_mean, "pixel_std": self.pixel_std}
        super()._apply(fn, recurse)
        for name, value in constants.items():
            setattr(self, name, value.to(device=getattr(self, name).device, dtype=torch.float32))
        return self

    @property
    def device(self) -> Any:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the networks' weights."""
        return self.mask_decoder.iou_token.weight.dtype

    @torch.no_grad()
    def forward(self, batched_input: list[dict[str, Any]], multimask_output: bool) -> list[dict[str, torch.Tensor]]:
        """End-to-end prediction for a list of images, each with its own batch of prompts.

        Each record holds 'image' (3, H, W) already resized with ResizeLongestSide,
        'original_size' (H, W), and optionally 'point_coords' (B, N, 2),
        'point_labels' (B, N), 'boxes' (B, 4) and 'mask_inputs' (B, 1, 256, 256)
        in the resized frame. Returns per image 'masks' (B, C, H, W) bool,
        'iou_predictions' (B, C) and 'low_res_logits' (B, C, 256, 256).
        """
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input], dim=0)
        image_embeddings = self.image_encoder(images)
        outputs = []
        for record, embedding in zip(batched_input, image_embeddings):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            sparse, dense = self.prompt_encoder(
                points=points, boxes=record.get("boxes", None), masks=record.get("mask_inputs", None)
            )
            low_res_masks, iou_predictions = self.mask_decoder(
                image_embeddings=embedding.unsqueeze(0),
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(low_res_masks, record["image"].shape[-2:], record["original_size"])
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou_predictions,
                    "low_res_logits": low_res_masks,
                }
            )
        return outputs

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """(B, C, h, w) low-res logits -> (B, C, H, W) float32 logits at the original image size.

        Upscales to the padded encoder frame, crops the padding (``input_size`` is
        the resized image before padding), then resizes to ``original_size``:
        :func:`promptseg.ops.upscale_mask_logits`, the reference of ``promptseg.ops.mask_postprocess``.
        """
        return upscale_mask_logits(masks, input_size, original_size, self.image_encoder.img_size)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(3, h, w) 0..255 RGB -> (3, S, S) normalised, zero-padded at bottom/right, in the model dtype."""
        x = (x.float() - self.pixel_mean) / self.pixel_std
        side = self.image_encoder.img_size
        height, width = x.shape[-2:]
        return F.pad(x, (0, side - width, 0, side - height)).to(self.dtype)
