"""The Segment Anything model: image encoder + prompt encoder + mask decoder, with pre/post-processing.

Besides the official methods, :class:`Sam` holds the one module-level decode that every decoder
over the model's modules, the ONNX export graphs and training call:
:meth:`Sam.embed_prompt_tokens` (token coordinates and labels, plus extra embedded tokens such as
a text prompt's, to the sparse embeddings) and :meth:`Sam.decode_tokens` (those, the dense
embeddings and the image embeddings to every mask output's low-res logits and IoU).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

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

    def embed_prompt_tokens(
        self,
        coords: torch.Tensor,
        labels: torch.Tensor,
        extra_tokens: Optional[torch.Tensor] = None,
        frame_xy: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The sparse prompt embeddings the mask decoder takes: ``PromptEncoder.sparse_embeddings``
        (``coords``: (P, T, 2) token (x, y) in pixels of the padded input frame, by SAM's token rule)."""
        return self.prompt_encoder.sparse_embeddings(coords, labels, extra_tokens, frame_xy)

    def decode_tokens(
        self,
        image_embeddings: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        dense_embeddings: Optional[torch.Tensor] = None,
        image_index: Optional[torch.Tensor] = None,
        extra_tokens: Optional[torch.Tensor] = None,
        token_padding_mask: Optional[torch.Tensor] = None,
        frame_xy: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt tokens on image embeddings -> all ``num_mask_tokens`` low-res masks and their IoU.

        :meth:`embed_prompt_tokens`, then ``MaskDecoder.predict_masks`` with the dense positional
        encoding; differentiable (training calls it too).

        Args:
            image_embeddings: (B, C, H, W).
            coords: (P, T, 2) float token (x, y) in pixels of the padded input frame.
            labels: (P, T) token labels in {-1, 0, 1, 2, 3}.
            dense_embeddings: (P, C, H, W) dense prompt embeddings (e.g.
                :meth:`PromptEncoder.dense_embeddings` of the prompts' mask inputs), or None when
                no prompt has a mask input.
            image_index: (P,) int64, the row of ``image_embeddings`` each prompt belongs to; None
                repeats every image embedding once per prompt (the official behaviour, B = 1).
            extra_tokens: (P, K, C) embedded tokens after the point-like ones (text), or None.
            token_padding_mask: (P, T + K) bool, False for tokens that only pad the batch, or None.
            frame_xy: see :meth:`PromptEncoder.embed_tokens`.
        Returns:
            (P, num_mask_tokens, 4H, 4W) low-res mask logits (output 0 is the single-mask output,
            1.. the multimask outputs) and (P, num_mask_tokens) IoU predictions.
        """
        sparse = self.embed_prompt_tokens(coords, labels, extra_tokens, frame_xy)
        if dense_embeddings is None:
            dense_embeddings = self.prompt_encoder.no_mask_dense_embeddings(sparse.shape[0])
        return self.mask_decoder.predict_masks(
            image_embeddings,
            self.prompt_encoder.get_dense_pe(),
            sparse,
            dense_embeddings,
            image_index=image_index,
            token_padding_mask=token_padding_mask,
        )

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
        return normalize_and_pad(x, self.pixel_mean, self.pixel_std, self.image_encoder.img_size, self.dtype)


def normalize_and_pad(
    image: torch.Tensor, pixel_mean: torch.Tensor, pixel_std: torch.Tensor, side: int, dtype: torch.dtype
) -> torch.Tensor:
    """The arithmetic of :meth:`Sam.preprocess`, for encoders that hold their own constants.

    Args:
        image: (..., 3, h, w) 0..255 RGB with h, w <= ``side``.
        pixel_mean, pixel_std: (3, 1, 1) float32 per-channel normalisation, on the image's device.
        side: the encoder's square input size S.
        dtype: the dtype the encoder takes.
    Returns:
        (..., 3, S, S) normalised in float32, zero-padded at bottom/right, then cast to ``dtype``.
    """
    x = (image.float() - pixel_mean) / pixel_std
    height, width = x.shape[-2:]
    return F.pad(x, (0, side - width, 0, side - height)).to(dtype)
