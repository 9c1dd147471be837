"""Engines behind the seams for SAM 2 models: the exported encoder and decoder graphs of
:mod:`promptseg.export.sam2_onnx` run by an engine (ONNX Runtime's :class:`OnnxRuntimeEngine`, or
TensorRT), as an :class:`~promptseg.encoders.ImageEncoder` and a SAM 2
:class:`~promptseg.decoders.Decoder`. ``SamPredictor`` and ``SAM2ImagePredictor`` take them
(``encoder=``, ``decoder=``)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from promptseg.decoders import RegionCleanup, Sam2Decoder
from promptseg.encoders import ImageEncoder, MultiScaleFeatures
from promptseg.encoders.sam2 import normalize_unit_rgb
from promptseg.export.engine_decoder import Engine, at_least_one_token
from promptseg.export.profiles import EngineLimits
from promptseg.prompts.batch import PromptBatch
from promptseg.prompts.frames import SquareResize
from promptseg.sam2.modeling.sam2_base import SAM2Base


class Sam2EngineImageEncoder(ImageEncoder):
    """(B, 3, S, S) images in SAM 2's frame -> :class:`MultiScaleFeatures` from an encoder engine
    (``export_sam2_onnx_encoder``), ``max_images`` per run; preprocessing is
    :func:`promptseg.encoders.sam2.normalize_unit_rgb` on the engine's device."""

    def __init__(self, engine: Engine, img_size: int, max_images: int, dtype: torch.dtype = torch.float32) -> None:
        """
        Args:
            engine: runs the encoder graph (input ``images``; outputs ``image_embeddings``,
                ``high_res_feats_0``, ``high_res_feats_1``).
            img_size: the side S of the graph's input; max_images: the most images per run.
            dtype: the dtype of the preprocessed images handed to the engine.
        """
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        self.engine = engine
        self._img_size = img_size
        self.max_images = max_images
        self._dtype = dtype

    @classmethod
    def for_model(cls, engine: Engine, model: SAM2Base, max_images: int) -> "Sam2EngineImageEncoder":
        """The encoder engine exported from ``model`` (its input size and dtype)."""
        return cls(engine, model.image_size, max_images, model.dtype)

    @property
    def img_size(self) -> int:
        return self._img_size

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def frame(self) -> SquareResize:
        return SquareResize(self.img_size)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return normalize_unit_rgb(image.to(self.device)).to(self.dtype)

    def encode(self, images: torch.Tensor) -> MultiScaleFeatures:
        self.check_images(images)
        outputs = [self.engine({"images": chunk}) for chunk in images.split(self.max_images)]
        levels = [torch.cat([output[name] for output in outputs]) for name in ("high_res_feats_0", "high_res_feats_1")]
        return MultiScaleFeatures(torch.cat([output["image_embeddings"] for output in outputs]), tuple(levels))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.engine).__name__}, img_size={self.img_size}, device={self.device})"


class Sam2EngineDecoder(Sam2Decoder):
    """Decodes packed SAM 2 prompts with a batched-decoder engine (``export_sam2_onnx_decoder``),
    ``limits.max_prompts`` prompts on at most ``limits.max_images`` images per call. The multimask
    choice is the model's ``MaskDecoder.select_masks`` (SAM 2's dynamic fall-back included);
    post-processing is :class:`~promptseg.decoders.Sam2Decoder`'s."""

    def __init__(
        self,
        engine: Engine,
        model: SAM2Base,
        limits: Optional[EngineLimits] = None,
        cleanup: RegionCleanup = RegionCleanup(),
    ) -> None:
        """
        Args:
            engine: runs the decoder graph.
            model: the SAM 2 model the graph was exported from (its multimask choice and sizes).
            limits: the shapes the engine takes; None: no limit (ONNX Runtime).
            cleanup: the post-processing's hole / sprinkle removal.
        """
        super().__init__(model, cleanup)
        self.engine = engine
        self.limits = limits

    def decode_all(
        self, features: MultiScaleFeatures, batch: PromptBatch, image_index: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every mask token's low-res logits (P, 4, S, S), IoU (P, 4), no output tokens (an empty
        (P, 0) tensor: the graph does not return them) and object scores (P, 1), float32."""
        if batch.extra_tokens is not None:
            raise ValueError("exported engines take point, box and mask prompts only")
        coords, labels, token_mask = at_least_one_token(batch)
        prompts, tokens = labels.shape
        max_images = max_prompts = None
        if self.limits is not None:
            if tokens > self.limits.max_points:
                raise ValueError(
                    f"a prompt has {tokens} tokens; the engine takes at most {self.limits.max_points}: rebuild it "
                    "with a larger EngineLimits.max_points"
                )
            max_images, max_prompts = self.limits.max_images, self.limits.max_prompts
        device = self.engine.device
        encoder = self.model.sam_prompt_encoder
        side = encoder.mask_input_size[0]
        mask_tokens = self.model.sam_mask_decoder.num_mask_tokens
        mask_inputs = batch.mask_inputs if batch.mask_inputs is not None else coords.new_zeros(prompts, 1, side, side)
        has_mask = batch.has_mask.float() if batch.has_mask is not None else coords.new_zeros(prompts)
        low_res = torch.empty(prompts, mask_tokens, side, side, device=device)
        iou = torch.empty(prompts, mask_tokens, device=device)
        object_scores = torch.empty(prompts, 1, device=device)
        index = torch.as_tensor(list(image_index), dtype=torch.long, device=device)
        images = index.unique()
        group_size = max_images or len(images)
        for first in range(0, len(images), group_size):
            group = images[first : first + group_size]
            members = torch.isin(index, group).nonzero().flatten()
            for chunk in members.split(max_prompts or max(len(members), 1)):
                outputs = self.engine(
                    {
                        "image_embeddings": features.embedding[group],
                        "high_res_feats_0": features.high_res[0][group],
                        "high_res_feats_1": features.high_res[1][group],
                        "point_coords": coords[chunk],
                        "point_labels": labels[chunk].float(),
                        "token_mask": token_mask[chunk],
                        "mask_input": mask_inputs[chunk],
                        "has_mask_input": has_mask[chunk],
                        "image_index": torch.searchsorted(group, index[chunk]),
                    }
                )
                low_res[chunk] = outputs["low_res_masks"].float()
                iou[chunk] = outputs["iou_predictions"].float()
                object_scores[chunk] = outputs["object_score_logits"].float()
        return low_res, iou, low_res.new_zeros(prompts, 0), object_scores

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.engine).__name__})"
