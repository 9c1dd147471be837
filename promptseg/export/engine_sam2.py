"""Engines behind the seams for SAM 2 models: the exported encoder and decoder graphs of
:mod:`promptseg.export.sam2_onnx` run by an engine (ONNX Runtime's :class:`OnnxRuntimeEngine`, or
TensorRT), as an :class:`~promptseg.encoders.ImageEncoder` and a SAM 2
:class:`~promptseg.decoders.Decoder`. ``SamPredictor`` and ``SAM2ImagePredictor`` take them
(``encoder=``, ``decoder=``)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from promptseg.amg.regions import RegionCleanup
from promptseg.decoders import Sam2Decoder
from promptseg.encoders import MultiScaleFeatures
from promptseg.encoders.sam2 import PIXEL_MEAN, PIXEL_STD, normalize_unit_rgb
from promptseg.export.engine_decoder import Engine, run_decoder_engine
from promptseg.export.engine_encoder import EngineImageEncoder
from promptseg.export.profiles import EngineLimits
from promptseg.prompts.batch import PromptBatch
from promptseg.prompts.frames import SquareResize
from promptseg.sam2.modeling.sam2_base import SAM2Base


class Sam2EngineImageEncoder(EngineImageEncoder):
    """(B, 3, S, S) images in SAM 2's frame -> :class:`MultiScaleFeatures` from an encoder engine
    (``export_sam2_onnx_encoder``), ``max_images`` per run; preprocessing is
    :func:`promptseg.encoders.sam2.normalize_unit_rgb` on the engine's device. Engine, sizes and
    ``repr`` as :class:`~promptseg.export.engine_encoder.EngineImageEncoder`."""

    def __init__(self, engine: Engine, img_size: int, max_images: int, dtype: torch.dtype = torch.float32) -> None:
        """
        Args:
            engine: runs the encoder graph (input ``images``; outputs ``image_embeddings``,
                ``high_res_feats_0``, ``high_res_feats_1``).
            img_size: the side S of the graph's input; max_images: the most images per run.
            dtype: the dtype of the preprocessed images handed to the engine.
        """
        super().__init__(engine, img_size, max_images, torch.tensor(PIXEL_MEAN), torch.tensor(PIXEL_STD), dtype)

    @classmethod
    def for_model(cls, engine: Engine, model: SAM2Base, max_images: int) -> "Sam2EngineImageEncoder":  # type: ignore[override]
        """The encoder engine exported from ``model`` (its input size and dtype)."""
        return cls(engine, model.image_size, max_images, model.dtype)

    @property
    def frame(self) -> SquareResize:
        return SquareResize(self.img_size)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """(..., 3, S, S) float RGB on a 0..1 scale -> normalised, in :attr:`dtype` on the engine's device."""
        return normalize_unit_rgb(image.to(self.device)).to(self.dtype)

    def encode(self, images: torch.Tensor) -> MultiScaleFeatures:  # type: ignore[override]
        self.check_images(images)
        outputs = [self.engine({"images": chunk}) for chunk in images.split(self.max_images)]
        levels = [torch.cat([output[name] for output in outputs]) for name in ("high_res_feats_0", "high_res_feats_1")]
        return MultiScaleFeatures(torch.cat([output["image_embeddings"] for output in outputs]), tuple(levels))


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
        cleanup: Optional[RegionCleanup] = None,
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
        side = self.model.sam_prompt_encoder.mask_input_size[0]
        mask_tokens = self.model.sam_mask_decoder.num_mask_tokens
        image_inputs = {"image_embeddings": features.embedding}
        image_inputs.update({f"high_res_feats_{level}": rows for level, rows in enumerate(features.high_res)})
        shapes = {"low_res_masks": (mask_tokens, side, side), "iou_predictions": (mask_tokens,), "object_score_logits": (1,)}
        outputs = run_decoder_engine(self.engine, image_inputs, batch, image_index, self.limits, shapes)
        low_res = outputs["low_res_masks"]
        return low_res, outputs["iou_predictions"], low_res.new_zeros(len(low_res), 0), outputs["object_score_logits"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.engine).__name__})"
