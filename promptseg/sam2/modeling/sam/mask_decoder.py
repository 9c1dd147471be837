"""The SAM 2 mask decoder, under the official ``sam2.modeling.sam.mask_decoder`` path.

As SAM's decoder, plus: an object-score token (whether the prompted object is in the image at
all), high-resolution features of the image encoder added inside the upscaling path, an IoU head
that may end in a sigmoid, and, for single-mask output, a fall-back to the best of the three
multimask outputs when the single mask is unstable. Names follow the official model.

The work is split for callers that batch or export it: :meth:`MaskDecoder.predict_masks` turns
prompt embeddings into every mask token's logits, IoU and the object score;
:meth:`MaskDecoder.select_masks` makes the multimask choice.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from promptseg.modeling.mask_decoder import prepend_output_tokens
from promptseg.ops import upscaled_mask_logits
from promptseg.sam2.modeling.sam2_utils import MLP, LayerNorm2d

__all__ = ["MaskDecoder"]


class MaskDecoder(nn.Module):
    """Predicts masks, their IoU and an object score from image and prompt embeddings.

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
        use_high_res_features: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        dynamic_multimask_via_stability: bool = False,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
    ) -> None:
        """
        Args:
            transformer_dim: channels of the tokens and of the image embedding.
            transformer: the two-way transformer.
            num_multimask_outputs: masks for ambiguous prompts (plus one single-mask output).
            activation: activation of the upscaling path.
            iou_head_depth, iou_head_hidden_dim: the IoU MLP; ``iou_prediction_use_sigmoid`` ends it in a sigmoid.
            use_high_res_features: add stride-8 and stride-4 image features (``conv_s1``, ``conv_s0``
                outputs) inside the upscaling.
            dynamic_multimask_via_stability: in eval, a single-mask request whose mask has a
                stability below ``dynamic_multimask_stability_thresh`` (logits cut at
                +-``dynamic_multimask_stability_delta``) gets the multimask output of highest IoU.
            pred_obj_scores: predict an object score from an extra token (an MLP head with
                ``pred_obj_scores_mlp``, else linear); without it the score is 10.
            use_multimask_token_for_obj_ptr: return the multimask tokens as object-pointer tokens.
        """
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1, stride=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1, stride=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head = (
                MLP(transformer_dim, transformer_dim, 1, 3) if pred_obj_scores_mlp else nn.Linear(transformer_dim, 1)
            )
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: Optional[Sequence[torch.Tensor]] = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embeddings: (B_img, C, H, W).
            image_pe: (1, C, H, W) from ``PromptEncoder.get_dense_pe``.
            sparse_prompt_embeddings: (P, T, C); dense_prompt_embeddings: (P or 1, C, H, W).
            multimask_output: the three ambiguity masks instead of the single one.
            repeat_image: repeat each image embedding once per prompt (B_img = 1); else B_img = P.
            high_res_features: [(B_img, C/8, 4H, 4W), (B_img, C/4, 2H, 2W)] with ``use_high_res_features``.
        Returns:
            masks (P, M, 4H, 4W) low-res logits and iou_pred (P, M), M = 3 or 1;
            sam_tokens_out (P, 3 or 1, C) object-pointer tokens; object_score_logits (P, 1).
        """
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings,
            repeat_image=repeat_image,
            high_res_features=high_res_features,
        )
        masks, iou_pred = self.select_masks(masks, iou_pred, multimask_output)
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            sam_tokens_out = mask_tokens_out[:, 0:1]
        return masks, iou_pred, sam_tokens_out, object_score_logits

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: Optional[Sequence[torch.Tensor]] = None,
        image_index: Optional[torch.Tensor] = None,
        token_padding_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every mask token's output, before the multimask choice.

        Args: as :meth:`forward`, plus (promptseg additions)
            image_index: (P,) long, the image of each prompt; when given, image embeddings and
                high-res features are gathered by it and ``repeat_image`` is ignored.
            token_padding_mask: (P, T) bool, False where a sparse token only pads a batch of
                prompts of different lengths.
        Returns:
            masks (P, num_mask_tokens, 4H, 4W), iou_pred (P, num_mask_tokens),
            mask_tokens_out (P, num_mask_tokens, C), object_score_logits (P, 1).
        """
        prompts = sparse_prompt_embeddings.shape[0]
        tokens, key_padding_mask = self.decoder_tokens(sparse_prompt_embeddings, token_padding_mask)
        if image_index is not None:
            src = image_embeddings[image_index]
            if high_res_features is not None:
                high_res_features = [features[image_index] for features in high_res_features]
        elif repeat_image:
            src = torch.repeat_interleave(image_embeddings, prompts, dim=0)
        else:
            if image_embeddings.shape[0] != prompts:
                raise ValueError(
                    f"repeat_image=False needs one image embedding per prompt: got {image_embeddings.shape[0]} "
                    f"embeddings for {prompts} prompts"
                )
            src = image_embeddings
        src = src + dense_prompt_embeddings
        if image_pe.shape[0] != 1:
            raise ValueError(f"image_pe must have batch size 1 (from get_dense_pe()), got {tuple(image_pe.shape)}")
        pos_src = torch.repeat_interleave(image_pe, prompts, dim=0)
        grid = (src.shape[2], src.shape[3])
        hs, src = self.transformer(src, pos_src, tokens, key_padding_mask=key_padding_mask)
        return self.masks_from_tokens(hs, src, grid, high_res_features)

    def decoder_tokens(
        self, sparse_prompt_embeddings: torch.Tensor, token_padding_mask: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The transformer's tokens: [object-score token,] IoU token, mask tokens, then the prompt tokens.

        Returns (P, S + T, C) tokens (S output tokens) and their (P, S + T) bool key padding mask
        (None when ``token_padding_mask`` is None).
        """
        output = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            output.insert(0, self.obj_score_token.weight)
        return prepend_output_tokens(torch.cat(output, dim=0), sparse_prompt_embeddings, token_padding_mask)

    def masks_from_tokens(
        self,
        hs: torch.Tensor,
        src: torch.Tensor,
        grid: tuple[int, int],
        high_res_features: Optional[Sequence[torch.Tensor]] = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The heads on the transformer's outputs.

        Args:
            hs: (P, S + T, C) processed tokens; src: (P, H*W, C) processed image tokens of an (H, W) ``grid``.
            high_res_features: as in :meth:`forward`, batch P or 1.
        Returns:
            as :meth:`predict_masks`.
        """
        first = 1 if self.pred_obj_scores else 0
        iou_token_out = hs[:, first, :]
        mask_tokens_out = hs[:, first + 1 : first + 1 + self.num_mask_tokens, :]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, index, :]) for index, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        if self.use_high_res_features and high_res_features is None:
            raise ValueError("this decoder uses high-resolution features; pass high_res_features=[feat_s0, feat_s1]")
        high_res = high_res_features if self.use_high_res_features else None
        masks = upscaled_mask_logits(src, grid, self.output_upscaling, hyper_in, high_res, backend=self.backend)
        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            object_score_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)  # "present": sigmoid(10) ~ 1
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def select_masks(
        self, masks: torch.Tensor, iou_pred: torch.Tensor, multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The multimask choice on (P, num_mask_tokens, h, w) logits and (P, num_mask_tokens) IoU.

        Returns the three multimask outputs, or one: token 0's, or (dynamic multimask, in eval)
        the best multimask output where token 0's mask is unstable.
        """
        if multimask_output:
            return masks[:, 1:, :, :], iou_pred[:, 1:]
        if self.dynamic_multimask_via_stability and not self.training:
            return self._dynamic_multimask_via_stability(masks, iou_pred)
        return masks[:, 0:1, :, :], iou_pred[:, 0:1]

    def stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """(..., h, w) logits -> (...) area above +delta over area above -delta (1 where the latter is 0)."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        inner = torch.sum(flat > delta, dim=-1).float()
        outer = torch.sum(flat > -delta, dim=-1).float()
        return torch.where(outer > 0, inner / outer, 1.0)

    def _get_stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """The official name of :meth:`stability_scores`."""
        return self.stability_scores(mask_logits)

    def _dynamic_multimask_via_stability(
        self, all_mask_logits: torch.Tensor, all_iou_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 4, h, w) and (P, 4) -> (P, 1, h, w) and (P, 1): token 0's output where its mask is stable,
        else the multimask output (tokens 1..3) of highest predicted IoU."""
        rows = torch.arange(all_iou_scores.shape[0], device=all_iou_scores.device)
        best = torch.argmax(all_iou_scores[:, 1:], dim=-1) + 1
        best_logits = all_mask_logits[rows, best].unsqueeze(1)
        best_scores = all_iou_scores[rows, best].unsqueeze(1)
        single_logits = all_mask_logits[:, 0:1]
        single_scores = all_iou_scores[:, 0:1]
        stable = self.stability_scores(single_logits) >= self.dynamic_multimask_stability_thresh
        logits = torch.where(stable[..., None, None].expand_as(single_logits), single_logits, best_logits)
        scores = torch.where(stable.expand_as(single_scores), single_scores, best_scores)
        return logits, scores
