"""``SAM2Base`` with the image-level parts of SAM 2, under the official ``sam2.modeling.sam2_base`` path.

The image encoder, the SAM prompt encoder and mask decoder (``sam_prompt_encoder``,
``sam_mask_decoder``) and ``no_mem_embed``, the "no memory" embedding a single image gets on its
lowest-resolution features. The video parts of the official class (memory attention, memory
encoder, object pointers, temporal encodings) are not built: :data:`VIDEO_ONLY_PREFIXES` names
their weights, which :func:`promptseg.sam2.checkpoint.load_checkpoint` skips. The video options
are accepted and kept as attributes, so the official configs build unchanged.

promptseg additions, so that the seams built for SAM (``promptseg.encoders``,
``promptseg.decoders``, ``SamPredictor``, the mask generator, export) serve SAM 2 too:
:meth:`SAM2Base.encode_image` (what the decoder needs of an image batch),
:meth:`SAM2Base.embed_prompt_tokens` and :meth:`SAM2Base.decode_tokens` (the one module-level
decode, as ``Sam``'s), ``prompt_encoder`` / ``mask_decoder`` (SAM's names of the two heads),
``mask_threshold``, ``image_format`` and ``dtype``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn
from torch.nn.init import trunc_normal_

from promptseg.sam2.modeling.sam.mask_decoder import MaskDecoder
from promptseg.sam2.modeling.sam.prompt_encoder import PromptEncoder
from promptseg.sam2.modeling.sam.transformer import TwoWayTransformer

__all__ = ["NO_OBJ_SCORE", "SAM2Base", "VIDEO_ONLY_PREFIXES"]

NO_OBJ_SCORE = -1024.0
"""The mask logit the official video model writes where it decides that no object is present."""

VIDEO_ONLY_PREFIXES = (
    "memory_attention.",
    "memory_encoder.",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
    "mask_downsample.",
)
"""State-dict key prefixes of the official model's video-only parts (not built here)."""

VIDEO_OPTIONS = (
    "num_maskmem",
    "sigmoid_scale_for_mem_enc",
    "sigmoid_bias_for_mem_enc",
    "binarize_mask_from_pts_for_mem_enc",
    "use_mask_input_as_output_without_sam",
    "max_cond_frames_in_attn",
    "multimask_output_in_sam",
    "multimask_min_pt_num",
    "multimask_max_pt_num",
    "multimask_output_for_tracking",
    "memory_temporal_stride_for_eval",
    "non_overlap_masks_for_mem_enc",
    "use_obj_ptrs_in_encoder",
    "max_obj_ptrs_in_encoder",
    "add_tpos_enc_to_obj_ptrs",
    "proj_tpos_enc_in_obj_ptrs",
    "use_signed_tpos_enc_to_obj_ptrs",
    "only_obj_ptrs_in_the_past_for_eval",
    "fixed_no_obj_ptr",
    "soft_no_obj_ptr",
    "use_mlp_for_obj_ptr_proj",
    "no_obj_embed_spatial",
)
"""The official constructor's video options: accepted and stored as attributes, not used."""


class SAM2Base(nn.Module):
    """The SAM 2 image model: image encoder, prompt encoder, mask decoder and ``no_mem_embed``."""

    mask_threshold: float = 0.0
    """Logit threshold of a mask (a promptseg addition, as ``Sam.mask_threshold``; the official
    predictor's default)."""
    image_format: str = "RGB"
    """The channel order the image encoder takes (a promptseg addition, as ``Sam.image_format``)."""

    def __init__(
        self,
        image_encoder: nn.Module,
        memory_attention: Optional[nn.Module] = None,
        memory_encoder: Optional[nn.Module] = None,
        num_maskmem: int = 7,
        image_size: int = 512,
        backbone_stride: int = 16,
        sigmoid_scale_for_mem_enc: float = 1.0,
        sigmoid_bias_for_mem_enc: float = 0.0,
        binarize_mask_from_pts_for_mem_enc: bool = False,
        use_mask_input_as_output_without_sam: bool = False,
        max_cond_frames_in_attn: int = -1,
        directly_add_no_mem_embed: bool = False,
        use_high_res_features_in_sam: bool = False,
        multimask_output_in_sam: bool = False,
        multimask_min_pt_num: int = 1,
        multimask_max_pt_num: int = 1,
        multimask_output_for_tracking: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        memory_temporal_stride_for_eval: int = 1,
        non_overlap_masks_for_mem_enc: bool = False,
        use_obj_ptrs_in_encoder: bool = False,
        max_obj_ptrs_in_encoder: int = 16,
        add_tpos_enc_to_obj_ptrs: bool = True,
        proj_tpos_enc_in_obj_ptrs: bool = False,
        use_signed_tpos_enc_to_obj_ptrs: bool = False,
        only_obj_ptrs_in_the_past_for_eval: bool = False,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        fixed_no_obj_ptr: bool = False,
        soft_no_obj_ptr: bool = False,
        use_mlp_for_obj_ptr_proj: bool = False,
        no_obj_embed_spatial: bool = False,
        sam_mask_decoder_extra_args: Optional[dict[str, Any]] = None,
        compile_image_encoder: bool = False,
    ) -> None:
        """The official constructor; the image-side arguments:

        Args:
            image_encoder: :class:`~promptseg.sam2.modeling.backbones.image_encoder.ImageEncoder`.
            memory_attention, memory_encoder: the video modules; must be None (not supported).
            image_size: side of the square input; backbone_stride: its ratio to the embedding's side.
            directly_add_no_mem_embed: add ``no_mem_embed`` to the lowest-resolution features of an image.
            use_high_res_features_in_sam: feed the two highest-resolution levels to the decoder.
            use_multimask_token_for_obj_ptr, iou_prediction_use_sigmoid, pred_obj_scores,
                pred_obj_scores_mlp: mask decoder options (see :class:`MaskDecoder`).
            sam_mask_decoder_extra_args: extra keyword arguments of the mask decoder (e.g. the
                dynamic multimask options).
            compile_image_encoder: ``torch.compile`` the image encoder's forward.

        The video options (:data:`VIDEO_OPTIONS`) are stored as attributes of the same names.
        """
        options = locals()
        super().__init__()
        if memory_attention is not None or memory_encoder is not None:
            raise ValueError(
                "promptseg.sam2 builds SAM 2 image models only; pass memory_attention=None and memory_encoder=None"
            )
        for name in VIDEO_OPTIONS:
            setattr(self, name, options[name])
        self.image_encoder = image_encoder
        self.use_high_res_features_in_sam = use_high_res_features_in_sam
        self.num_feature_levels = 3 if use_high_res_features_in_sam else 1
        self.memory_attention = None
        self.memory_encoder = None
        self.hidden_dim = image_encoder.neck.d_model
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        trunc_normal_(self.no_mem_embed, std=0.02)
        self.directly_add_no_mem_embed = directly_add_no_mem_embed
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.iou_prediction_use_sigmoid = iou_prediction_use_sigmoid
        self.image_size = image_size
        self.backbone_stride = backbone_stride
        self.sam_mask_decoder_extra_args = sam_mask_decoder_extra_args
        self.pred_obj_scores = pred_obj_scores
        self.pred_obj_scores_mlp = pred_obj_scores_mlp
        self._build_sam_heads()
        if compile_image_encoder:
            self.image_encoder.forward = torch.compile(
                self.image_encoder.forward, mode="max-autotune", fullgraph=True, dynamic=False
            )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the networks' weights (a promptseg addition)."""
        return self.no_mem_embed.dtype

    @property
    def prompt_encoder(self) -> PromptEncoder:
        """``sam_prompt_encoder`` under SAM's name (a promptseg addition)."""
        return self.sam_prompt_encoder

    @property
    def mask_decoder(self) -> MaskDecoder:
        """``sam_mask_decoder`` under SAM's name (a promptseg addition)."""
        return self.sam_mask_decoder

    def forward(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "SAM2Base has no forward; use promptseg.sam2.SAM2ImagePredictor (or "
            "SAM2AutomaticMaskGenerator) for images. Video prediction is not supported by promptseg."
        )

    def _build_sam_heads(self) -> None:
        """The SAM prompt encoder and mask decoder (SAM's sizes: 16 mask channels, depth 2, 8 heads)."""
        self.sam_prompt_embed_dim = self.hidden_dim
        self.sam_image_embedding_size = self.image_size // self.backbone_stride
        grid = (self.sam_image_embedding_size, self.sam_image_embedding_size)
        self.sam_prompt_encoder = PromptEncoder(
            embed_dim=self.sam_prompt_embed_dim,
            image_embedding_size=grid,
            input_image_size=(self.image_size, self.image_size),
            mask_in_chans=16,
        )
        self.sam_mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=self.sam_prompt_embed_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=self.sam_prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            use_high_res_features=self.use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=self.iou_prediction_use_sigmoid,
            pred_obj_scores=self.pred_obj_scores,
            pred_obj_scores_mlp=self.pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=self.use_multimask_token_for_obj_ptr,
            **(self.sam_mask_decoder_extra_args or {}),
        )

    def forward_image(self, img_batch: torch.Tensor) -> dict[str, Any]:
        """The image encoder's output dict for (B, 3, S, S) normalised images, with levels 0 and 1 of
        ``backbone_fpn`` already projected by the decoder's ``conv_s0`` / ``conv_s1`` (high-res mode)."""
        backbone_out = self.image_encoder(img_batch)
        if self.use_high_res_features_in_sam:
            fpn = backbone_out["backbone_fpn"]
            fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
            fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
        return backbone_out

    def _prepare_backbone_features(
        self, backbone_out: dict[str, Any]
    ) -> tuple[dict[str, Any], list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]]]:
        """The last ``num_feature_levels`` levels flattened to (H*W, B, C), their position encodings
        likewise, and their (H, W) sizes."""
        backbone_out = backbone_out.copy()
        feature_maps = backbone_out["backbone_fpn"][-self.num_feature_levels :]
        pos_embeds = backbone_out["vision_pos_enc"][-self.num_feature_levels :]
        feat_sizes = [(x.shape[-2], x.shape[-1]) for x in pos_embeds]
        vision_feats = [x.flatten(2).permute(2, 0, 1) for x in feature_maps]
        vision_pos_embeds = [x.flatten(2).permute(2, 0, 1) for x in pos_embeds]
        return backbone_out, vision_feats, vision_pos_embeds, feat_sizes

    def encode_image(self, img_batch: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """What the decoder needs of (B, 3, S, S) normalised images (a promptseg addition).

        Returns:
            image_embed: (B, C, S/16, S/16), with ``no_mem_embed`` added when
                ``directly_add_no_mem_embed``;
            high_res_feats: [(B, C/8, S/4, S/4), (B, C/4, S/8, S/8)] in high-res mode, else [].
        """
        fpn = self.forward_image(img_batch)["backbone_fpn"][-self.num_feature_levels :]
        image_embed = fpn[-1]
        if self.directly_add_no_mem_embed:
            image_embed = image_embed + self.no_mem_embed.view(1, -1, 1, 1)
        return image_embed, list(fpn[:-1])

    def embed_prompt_tokens(
        self,
        coords: torch.Tensor,
        labels: torch.Tensor,
        extra_tokens: Optional[torch.Tensor] = None,
        frame_xy: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The sparse prompt embeddings the mask decoder takes (a promptseg addition, as ``Sam``'s):
        ``PromptEncoder.sparse_embeddings`` (``coords``: (P, T, 2) token (x, y) in pixels of the S x S
        input frame, by SAM 2's token rule, ``promptseg.prompts.tokens`` ``rule="sam2"``)."""
        return self.sam_prompt_encoder.sparse_embeddings(coords, labels, extra_tokens, frame_xy)

    def decode_tokens(
        self,
        image_embeddings: torch.Tensor,
        high_res_features: Sequence[torch.Tensor],
        coords: torch.Tensor,
        labels: torch.Tensor,
        dense_embeddings: Optional[torch.Tensor] = None,
        image_index: Optional[torch.Tensor] = None,
        extra_tokens: Optional[torch.Tensor] = None,
        token_padding_mask: Optional[torch.Tensor] = None,
        frame_xy: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompt tokens on image features -> every mask token's low-res logits, IoU, output tokens and
        the object score (a promptseg addition: the one module-level decode that SAM 2's decoders and
        its ONNX graph call; the multimask choice is ``MaskDecoder.select_masks``).

        Args:
            image_embeddings: (B, C, H, W) from :meth:`encode_image`.
            high_res_features: its two high-resolution levels, batch B (empty without high-res features).
            coords, labels, extra_tokens, frame_xy: see :meth:`embed_prompt_tokens`.
            dense_embeddings: (P, C, H, W) dense prompt embeddings (``PromptEncoder.dense_embeddings``
                of the mask inputs), or None when no prompt has a mask input.
            image_index: (P,) int64 row of ``image_embeddings`` each prompt belongs to; None repeats
                each image once per prompt (B = 1).
            token_padding_mask: (P, T + K) bool, False for tokens that only pad the batch, or None.
        Returns:
            masks (P, num_mask_tokens, 4H, 4W), iou_pred (P, num_mask_tokens), mask_tokens_out
            (P, num_mask_tokens, C), object_score_logits (P, 1).
        """
        sparse = self.embed_prompt_tokens(coords, labels, extra_tokens, frame_xy)
        if dense_embeddings is None:
            dense_embeddings = self.sam_prompt_encoder.no_mask_dense_embeddings(sparse.shape[0])
        return self.sam_mask_decoder.predict_masks(
            image_embeddings,
            self.sam_prompt_encoder.get_dense_pe(),
            sparse,
            dense_embeddings,
            repeat_image=image_index is None,
            high_res_features=list(high_res_features) if self.use_high_res_features_in_sam else None,
            image_index=image_index,
            token_padding_mask=token_padding_mask,
        )
