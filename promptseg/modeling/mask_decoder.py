"""The mask decoder: two-way transformer over prompt tokens and the image embedding, then
hypernetwork MLPs that turn each mask token into a low-resolution mask, and an IoU head."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from promptseg.modeling.common import LayerNorm2d
from promptseg.ops import upscaled_mask_logits


class MaskDecoder(nn.Module):
    """Predicts ambiguity-aware masks and their IoU from prompt and image embeddings.

    ``backend`` is handed to the output head's op (``promptseg.ops.upscaled_mask_logits``; see
    :func:`promptseg.ops.set_backend`).
    """

    backend: str = "auto"

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        """
        Args:
            transformer_dim: channels of the tokens and of the image embedding.
            transformer: the two-way transformer.
            num_multimask_outputs: masks predicted for ambiguous prompts (plus one single-mask output).
            activation: activation of the upscaling path.
            iou_head_depth, iou_head_hidden_dim: the IoU prediction MLP.
        """
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        image_index: Optional[torch.Tensor] = None,
        token_padding_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embeddings: (B_img, C, H, W).
            image_pe: (1, C, H, W) dense positional encoding.
            sparse_prompt_embeddings: (P, T, C) prompt tokens.
            dense_prompt_embeddings: (P, C, H, W) mask-prompt embeddings.
            multimask_output: return the 3 ambiguity masks instead of the single one.
            image_index: (P,) long, the image each prompt belongs to (a promptseg
                addition). None keeps the official behaviour: every image
                embedding is repeated once per prompt.
            token_padding_mask: (P, T) bool, False where a token only pads a
                batch of prompts of different lengths (a promptseg addition).
        Returns:
            masks: (P, M, 4H, 4W) low-resolution mask logits, M = 3 or 1.
            iou_pred: (P, M) predicted IoU of each mask.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            image_index,
            token_padding_mask,
        )
        selected = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, selected], iou_pred[:, selected]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        image_index: Optional[torch.Tensor] = None,
        token_padding_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``num_mask_tokens`` masks (P, num_mask_tokens, 4H, 4W) and their IoU (P, num_mask_tokens)."""
        prompts = sparse_prompt_embeddings.shape[0]
        tokens, key_padding_mask = self.decoder_tokens(sparse_prompt_embeddings, token_padding_mask)
        if image_index is None:
            src = torch.repeat_interleave(image_embeddings, prompts, dim=0)
        else:
            src = image_embeddings[image_index]
        src = src + dense_prompt_embeddings
        pos_src = image_pe.expand(src.shape[0], -1, -1, -1)
        height, width = src.shape[-2:]
        hs, src = self.transformer(src, pos_src, tokens, key_padding_mask=key_padding_mask)
        return self.masks_from_tokens(hs, src, (height, width))

    def decoder_tokens(
        self, sparse_prompt_embeddings: torch.Tensor, token_padding_mask: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The transformer's token sequence: the IoU token and the mask tokens, then the prompt tokens.

        Args:
            sparse_prompt_embeddings: (P, T, C).
            token_padding_mask: (P, T) bool, False for padding tokens, or None.
        Returns:
            (P, 1 + num_mask_tokens + T, C) tokens and their (P, 1 + num_mask_tokens + T) bool key
            padding mask (None when ``token_padding_mask`` is None).
        """
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        return prepend_output_tokens(output_tokens, sparse_prompt_embeddings, token_padding_mask)

    def masks_from_tokens(
        self, hs: torch.Tensor, src: torch.Tensor, grid: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask and IoU heads on the transformer's outputs.

        Args:
            hs: (P, T', C) processed tokens (IoU token, mask tokens, prompt tokens).
            src: (P, H*W, C) processed image tokens of an (H, W) ``grid``.
        Returns:
            (P, num_mask_tokens, 4H, 4W) mask logits and (P, num_mask_tokens) IoU predictions.
        """
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        masks = upscaled_mask_logits(src, grid, self.output_upscaling, hyper_in, backend=self.backend)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred


def prepend_output_tokens(
    output_tokens: torch.Tensor, sparse_prompt_embeddings: torch.Tensor, token_padding_mask: Optional[torch.Tensor]
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A mask decoder's token sequence: its (S, C) output tokens (SAM: IoU and mask tokens; SAM 2: the
    object-score token first), then each prompt's (P, T, C) tokens.

    Returns:
        (P, S + T, C) tokens and their (P, S + T) bool key padding mask (output tokens always valid;
        None when ``token_padding_mask`` is None).
    """
    prompts = sparse_prompt_embeddings.shape[0]
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(prompts, -1, -1), sparse_prompt_embeddings), dim=1)
    if token_padding_mask is None:
        return tokens, None
    always_valid = token_padding_mask.new_ones(prompts, output_tokens.shape[0])
    return tokens, torch.cat([always_valid, token_padding_mask], dim=1)


class MLP(nn.Module):
    """``num_layers`` linear layers input_dim -> hidden_dim x (num_layers - 1) -> output_dim, with ReLU
    between them (:meth:`activate`) and an optional sigmoid. Parameters are ``layers.{i}.weight/bias``
    and the module tree is the official one (no activation module); SAM 2's ``MLP``
    (``promptseg.sam2.modeling.sam2_utils``) is this one with its own activation module ``act``."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        hidden = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + hidden, hidden + [output_dim]))
        self.sigmoid_output = sigmoid_output

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        """The activation between layers: ReLU, as officially."""
        return torch.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < self.num_layers - 1:
                x = self.activate(x)
        return torch.sigmoid(x) if self.sigmoid_output else x
