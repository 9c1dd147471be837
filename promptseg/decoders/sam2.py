"""Decoders of SAM 2 models (``promptseg.sam2``): the Decoder seam for SAM 2's prompts and frame.

What differs from SAM's decoders, and lives here:

* tokens: SAM 2's rule (``token_rule = "sam2"``: box corners, points, then always one padding token);
* features: :class:`~promptseg.sam2.modeling.features.MultiScaleFeatures`, whose two high-resolution
  levels the SAM 2 mask decoder adds in its upscaling (gathered per prompt like the embedding);
* outputs: the object score of each prompt (:meth:`Sam2Decoder.decode_with_object_scores`), and
  for single-mask output the dynamic multimask choice (``MaskDecoder.select_masks``);
* post-processing: SAM 2's frame has no padding, so low-res logits are resized straight to the
  image size (bilinear), after the optional hole / sprinkle removal given as ``cleanup``
  (``promptseg.amg.regions.RegionCleanup``): :func:`upscale_sam2_logits`, the arithmetic of the
  official ``SAM2Transforms.postprocess_masks``.

Implementations: :class:`Sam2ModuleDecoder` (the model's modules, through
``SAM2Base.decode_tokens``) and :class:`Sam2FusedDecoder` (the first two-way block's image-side
work hoisted per image, as :class:`~promptseg.decoders.fused.FusedDecoder`, with promptseg's
attention kernels on CUDA bf16/fp16); ``AutoDecoder`` picks between them.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import Callable, Optional, Sequence

import torch
from torch.nn import functional as F

from promptseg.decoders.base import DecodeResult, ModelDecoder, device_longs
from promptseg.decoders.fused import (
    ImageTable,
    ImageTableCache,
    cpu_hoisting_applies,
    fused_path_available,
    gather_prompts,
)
from promptseg.masks import mask_boxes_xyxy, stability_score
from promptseg.prompts.batch import PromptBatch
from promptseg.prompts.tokens import SAM2_RULE
from promptseg.sam2.modeling.features import MultiScaleFeatures
from promptseg.sam2.modeling.sam2_base import SAM2Base

SAM2_FUSED_OPS = ("token_attention", "gathered_token_attention")
"""Kernels the SAM 2 fused decoder is chosen for (SAM 2's post-processing has no kernel)."""

Sam2DecodeResult = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(P, C, S, S) low-res logits, (P, C) IoU and (P, 1) object score logits."""

LowResCleanup = Callable[[torch.Tensor], torch.Tensor]
"""(P, C, h, w) low-res logits -> the same, cleaned (SAM 2's hole / sprinkle removal:
``promptseg.amg.regions.RegionCleanup``, which the predictors and the mask generator pass in)."""


def upscale_sam2_logits(
    low_res: torch.Tensor, original_size: Sequence[int], cleanup: Optional[LowResCleanup] = None
) -> torch.Tensor:
    """(P, C, h, w) low-res logits -> (P, C, H, W) float32 logits at the image's (H, W) = ``original_size``:
    ``cleanup`` on the low-res logits (None: none), then a bilinear resize (no padding to crop in SAM 2's frame)."""
    masks = low_res.float()
    if cleanup is not None:
        masks = cleanup(masks)
    return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)


def multiscale(features: object) -> MultiScaleFeatures:
    """``features`` checked to be SAM 2's :class:`MultiScaleFeatures`."""
    if not isinstance(features, MultiScaleFeatures):
        raise TypeError(
            "a SAM 2 decoder takes MultiScaleFeatures (the image embedding and its high-resolution levels, from "
            f"promptseg.encoders.Sam2ImageEncoder), got {type(features).__name__}"
        )
    return features


class Sam2Decoder(ModelDecoder):
    """A decoder over a SAM 2 model's modules: SAM 2's token rule, object scores, frame and clean-up.

    Subclasses implement :meth:`decode_all`.

    Attributes:
        model: the :class:`~promptseg.sam2.modeling.sam2_base.SAM2Base` whose modules decode.
        cleanup: the :data:`LowResCleanup` of :meth:`postprocess` (default None: none).
    """

    token_rule = SAM2_RULE
    model: SAM2Base

    def __init__(self, model: SAM2Base, cleanup: Optional[LowResCleanup] = None) -> None:
        if not isinstance(model, SAM2Base):
            raise TypeError(f"{type(self).__name__} takes a promptseg.sam2 SAM2Base model, got {type(model).__name__}")
        self.model = model
        self.cleanup = cleanup

    def with_cleanup(self, cleanup: Optional[LowResCleanup]) -> "Sam2Decoder":
        """A decoder that shares this one's model (and caches) and post-processes with ``cleanup``."""
        other = copy.copy(self)
        other.cleanup = cleanup
        return other

    @abstractmethod
    def decode_all(
        self, features: MultiScaleFeatures, batch: PromptBatch, image_index: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every mask token's output for P prompts: ``SAM2Base.decode_tokens``' four results."""

    def decode_with_object_scores(
        self, features: MultiScaleFeatures, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> Sam2DecodeResult:
        """:meth:`decode`, plus the (P, 1) object score logits (> 0: the object is in the image)."""
        masks, iou, _, object_scores = self.decode_all(multiscale(features), batch, image_index)
        masks, iou = self.model.sam_mask_decoder.select_masks(masks, iou, multimask_output)
        return masks, iou, object_scores

    def decode(
        self, features: MultiScaleFeatures, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> DecodeResult:
        """Masks and IoU of P prompts (see ``Decoder.decode``); ``features`` are MultiScaleFeatures, the
        tokens follow SAM 2's rule, and single-mask output makes SAM 2's dynamic multimask choice."""
        masks, iou, _ = self.decode_with_object_scores(features, batch, image_index, multimask_output)
        return masks, iou

    def postprocess(
        self,
        low_res: torch.Tensor,
        input_size: Sequence[int],
        original_size: Sequence[int],
        image_size: int,
        threshold: float,
        return_logits: bool,
    ) -> torch.Tensor:
        """(P, C, h, w) low-res logits -> (P, C, H, W) bool masks (> ``threshold``) or float32 logits:
        :func:`upscale_sam2_logits` with :attr:`cleanup` (``input_size`` and ``image_size`` are the
        square frame's and not needed)."""
        logits = upscale_sam2_logits(low_res, original_size, self.cleanup)
        return logits if return_logits else logits > threshold

    def measure(
        self,
        low_res: torch.Tensor,
        input_size: Sequence[int],
        original_size: Sequence[int],
        image_size: int,
        threshold: float,
        stability_offset: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes and stability scores of the full-size masks, from the logits of :meth:`postprocess`,
        as the official SAM 2 generator computes them (see ``Decoder.measure``)."""
        logits = self.postprocess(low_res, input_size, original_size, image_size, threshold, True).flatten(0, 1)
        return mask_boxes_xyxy(logits > threshold), stability_score(logits, threshold, stability_offset)

    def __repr__(self) -> str:
        cleanup = f", cleanup={self.cleanup}" if self.cleanup is not None else ""
        return f"{type(self).__name__}(backend={self.backend!r}{cleanup})"


class Sam2ModuleDecoder(Sam2Decoder):
    """The SAM 2 model's prompt encoder and mask decoder through ``SAM2Base.decode_tokens``, as the
    official predictor runs them (plus key padding for prompts of different lengths and an index
    from prompts to images)."""

    def decode_all(
        self, features: MultiScaleFeatures, batch: PromptBatch, image_index: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dense = self.model.sam_prompt_encoder.dense_embeddings(len(batch.labels), batch.mask_inputs, batch.has_mask)
        return self.model.decode_tokens(
            features.embedding,
            features.high_res,
            batch.coords,
            batch.labels,
            dense,
            image_index=device_longs(image_index, features.device),
            extra_tokens=batch.extra_tokens,
            token_padding_mask=batch.token_mask,
        )


def sam2_fused_path_available(model: SAM2Base, features: Optional[MultiScaleFeatures]) -> bool:
    """True when :class:`Sam2FusedDecoder` runs promptseg's attention kernels for ``model`` on ``features``
    (see ``promptseg.decoders.fused.fused_path_available``; the kernels of :data:`SAM2_FUSED_OPS`)."""
    embedding = None if features is None else multiscale(features).embedding
    return fused_path_available(model, embedding, SAM2_FUSED_OPS)


def sam2_cpu_hoisting_applies(model: SAM2Base, features: Optional[MultiScaleFeatures]) -> bool:
    """True where :class:`Sam2FusedDecoder` pays on the CPU without kernels (float32; see
    ``promptseg.decoders.fused.cpu_hoisting_applies``)."""
    embedding = None if features is None else multiscale(features).embedding
    return cpu_hoisting_applies(model, embedding)


class Sam2FusedDecoder(Sam2Decoder):
    """SAM 2's decode with the first two-way block's image-side work done once per image.

    The same arithmetic as :class:`Sam2ModuleDecoder` (the table and the gathered first block are
    :mod:`promptseg.decoders.fused`'s; the high-resolution levels are gathered by each prompt's
    image). The image table of the last embedding is cached and rebuilt when the embedding or the
    weights it reads change.
    """

    def __init__(self, model: SAM2Base, cleanup: Optional[LowResCleanup] = None) -> None:
        super().__init__(model, cleanup)
        self._tables = ImageTableCache(model)

    def table(self, embedding: torch.Tensor) -> ImageTable:
        """The image table of (B, C, H, W) embeddings, from the cache when still valid."""
        return self._tables.get(embedding)

    @torch.no_grad()
    def prepare(self, features: MultiScaleFeatures) -> None:  # type: ignore[override]
        self._tables.prepare(features.embedding)

    @torch.no_grad()
    def decode_all(
        self, features: MultiScaleFeatures, batch: PromptBatch, image_index: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        table = self.table(features.embedding)
        hs, keys, grid = gather_prompts(self.model, table.rows, image_index, batch).transform(self.model, table)
        rows = device_longs(image_index, features.device)
        high_res = [level[rows] for level in features.high_res] if self.model.use_high_res_features_in_sam else None
        return self.model.sam_mask_decoder.masks_from_tokens(hs, keys, grid, high_res)
