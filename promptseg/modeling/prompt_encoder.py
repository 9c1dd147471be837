"""The prompt encoder: points, boxes and masks -> sparse and dense prompt embeddings.

Sparse tokens are point-like: a point with label 0 (background) or 1
(foreground), a box corner with label 2 (top-left) or 3 (bottom-right), or the
"not a point" token with label -1 that pads a point prompt given without a box.
Which tokens a prompt has is the one token rule of :mod:`promptseg.prompts.tokens`.

Public methods for callers outside ``modeling/``: :meth:`PromptEncoder.embed_tokens`,
:meth:`PromptEncoder.embed_masks`, :meth:`PromptEncoder.dense_embeddings`,
:meth:`PromptEncoder.blended_dense_embeddings`, :meth:`PromptEncoder.no_mask_dense_embeddings`,
:meth:`PromptEncoder.get_dense_pe` and :attr:`PromptEncoder.dtype`. The underscore methods are the official model's names, kept for
code written against it.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from promptseg.modeling.common import LayerNorm2d
from promptseg.prompts.tokens import BACKGROUND, BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, FOREGROUND, NOT_A_POINT, token_sequence

__all__ = [
    "BACKGROUND",
    "BOX_BOTTOM_RIGHT",
    "BOX_TOP_LEFT",
    "FOREGROUND",
    "NOT_A_POINT",
    "PositionEmbeddingRandom",
    "PromptEncoder",
]


class PromptEncoder(nn.Module):
    """Embeds prompts for the mask decoder; module names follow the official model."""

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        """
        Args:
            embed_dim: channels of every prompt embedding.
            image_embedding_size: (H, W) of the image embedding.
            input_image_size: (H, W) of the padded image fed to the encoder.
            mask_in_chans: hidden channels of the mask downscaling convs.
            activation: activation class of the mask downscaling.
        """
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings: int = 4  # background, foreground, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the embedding weights (the positional encoding's frequencies stay float32)."""
        return self.no_mask_embed.weight.dtype

    def _get_device(self) -> torch.device:
        return self.no_mask_embed.weight.device

    def get_dense_pe(self) -> torch.Tensor:
        """(1, embed_dim, H, W) positional encoding of the image embedding grid."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0).to(self.dtype)

    def embed_tokens(
        self, coords: torch.Tensor, labels: torch.Tensor, frame_xy: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Embed point-like tokens.

        Args:
            coords: (B, N, 2) float (x, y) in pixels of the padded input frame.
            labels: (B, N) int in {-1, 0, 1, 2, 3} (see the module docstring).
            frame_xy: (2,) float32 (width, height) of that frame as a device tensor, or None to
                use ``input_image_size``. A CUDA graph passes a static tensor here, since
                building it from Python numbers on each call is a host-to-device copy that
                graph capture does not allow; the arithmetic is the same.
        Returns:
            (B, N, embed_dim) embeddings in the model dtype: the positional
            encoding of the pixel centre plus the label's learned embedding;
            label -1 gets only the "not a point" embedding.
        """
        if frame_xy is None:
            encoding = self.pe_layer.forward_with_coords(coords + 0.5, self.input_image_size)
        else:
            encoding = self.pe_layer.encode_normalized((coords + 0.5).float() / frame_xy)
        encoding = encoding.masked_fill((labels == NOT_A_POINT)[..., None], 0.0)
        label_table = torch.cat([self.not_a_point_embed.weight] + [e.weight for e in self.point_embeddings])
        return (encoding + label_table.float()[labels.long() + 1]).to(self.dtype)

    def sparse_embeddings(
        self,
        coords: torch.Tensor,
        labels: torch.Tensor,
        extra_tokens: Optional[torch.Tensor] = None,
        frame_xy: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The sparse prompt embeddings the mask decoder takes: :meth:`embed_tokens`, then ``extra_tokens``.

        Args:
            coords: (P, T, 2) float token (x, y) in pixels of the input frame, by the model's token rule.
            labels: (P, T) token labels in {-1, 0, 1, 2, 3} (any numeric dtype).
            extra_tokens: (P, K, C) embedded tokens that follow the point-like ones (a text
                prompt's), or None.
            frame_xy: see :meth:`embed_tokens`.
        Returns:
            (P, T + K, C) embeddings in the model dtype.
        """
        sparse = self.embed_tokens(coords, labels, frame_xy=frame_xy)
        if extra_tokens is None:
            return sparse
        return torch.cat([sparse, extra_tokens.to(sparse.dtype)], dim=1)

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, 4H, 4W) mask logits -> (B, C, H, W) dense embeddings."""
        return self.mask_downscaling(masks.to(self.dtype))

    def no_mask_dense_embeddings(self, batch: int) -> torch.Tensor:
        """(batch, C, H, W) dense embeddings for prompts without a mask (a broadcast view)."""
        height, width = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, height, width)

    def dense_embeddings(
        self, batch: int, mask_inputs: Optional[torch.Tensor] = None, has_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """(batch, C, H, W) dense embeddings of ``batch`` prompts, some of which carry a mask input.

        Args:
            mask_inputs: (batch, 1, 4H, 4W) mask logits, or None when no prompt has one.
            has_mask: (batch,) bool, which rows of ``mask_inputs`` are real; None means all.
        """
        if mask_inputs is None:
            return self.no_mask_dense_embeddings(batch)
        embedded = self.embed_masks(mask_inputs)
        if has_mask is None:
            return embedded
        return torch.where(has_mask[:, None, None, None], embedded, self.no_mask_dense_embeddings(batch))

    def blended_dense_embeddings(self, mask_inputs: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
        """(P, C, H, W) dense embeddings as the official ONNX export computes them, without control flow:
        ``has_mask`` (P,) float (1 or 0) blends the embedded ``mask_inputs`` (P, 1, 4H, 4W) with the
        no-mask embedding. Equal to :meth:`dense_embeddings` for finite mask inputs."""
        weight = has_mask.reshape(-1, 1, 1, 1).to(self.dtype)
        no_mask = self.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return weight * self.embed_masks(mask_inputs) + (1 - weight) * no_mask

    # The official model's private names, for code written against it.
    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """(B, N, 2) points and (B, N) labels -> (B, N + pad, C); ``pad`` appends a "not a point" token."""
        return self.embed_tokens(*token_sequence(points, labels, None)) if pad else self.embed_tokens(points, labels)

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 4) XYXY boxes -> (B, 2, C) corner tokens."""
        return self.embed_tokens(*token_sequence(None, None, boxes))

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        return self.embed_masks(masks)

    def forward(
        self,
        points: Optional[tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            points: ((B, N, 2) coords, (B, N) labels) in the padded input frame, or None.
            boxes: (B, 4) XYXY boxes in the padded input frame, or None.
            masks: (B, 1, 4H, 4W) mask logits, or None.
        Returns:
            sparse: (B, T, C) with T = N + (1 if boxes is None else 2) when
                points are given; without points T = 2 with boxes, else 0.
            dense: (B, C, H, W).
        """
        batch = _batch_size(points, boxes, masks)
        coords, labels = points if points is not None else (None, None)
        coords, labels = token_sequence(coords, labels, boxes, batch, self._get_device())
        sparse = self.embed_tokens(coords, labels)
        dense = self.embed_masks(masks) if masks is not None else self.no_mask_dense_embeddings(batch)
        return sparse, dense


def _batch_size(
    points: Optional[tuple[torch.Tensor, torch.Tensor]], boxes: Optional[torch.Tensor], masks: Optional[torch.Tensor]
) -> int:
    if points is not None:
        return points[0].shape[0]
    if boxes is not None:
        return boxes.shape[0]
    if masks is not None:
        return masks.shape[0]
    return 1


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial (Fourier) frequencies.

    The frequency matrix stays float32 whatever dtype the model is cast to:
    sin/cos of phases up to ~2*pi*|f| lose all precision in bf16.
    """

    def __init__(self, num_pos_feats: int = 64, scale: Optional[float] = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "PositionEmbeddingRandom":
        matrix = self.positional_encoding_gaussian_matrix
        super()._apply(fn, recurse)
        moved = self.positional_encoding_gaussian_matrix
        self.positional_encoding_gaussian_matrix = matrix.to(device=moved.device, dtype=torch.float32)
        return self

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) coords normalised to [0, 1] -> (..., 2 * num_pos_feats) float32."""
        phases = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([torch.sin(phases), torch.cos(phases)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """(C, h, w) float32 encoding of the centres of an h x w grid."""
        height, width = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """(B, N, 2) pixel (x, y) in an image of (H, W) -> (B, N, C) float32."""
        size_xy = torch.tensor([image_size[1], image_size[0]], dtype=torch.float32, device=coords_input.device)
        return self.encode_normalized(coords_input.float() / size_xy)

    def encode_normalized(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) coords normalised to [0, 1] -> (..., 2 * num_pos_feats) float32."""
        return self._pe_encoding(coords)
