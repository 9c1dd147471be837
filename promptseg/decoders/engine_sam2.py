"""``Sam2EngineDecoder``: a SAM 2 :class:`~promptseg.decoders.sam2.Sam2Decoder` that runs the exported
batched-decoder graph of ``promptseg.export.export_sam2_onnx_decoder`` in an engine (ONNX Runtime or
TensorRT), through :func:`~promptseg.decoders.engine.run_decoder_engine` as SAM's
:class:`~promptseg.decoders.engine.EngineDecoder`. The encoder side is
:class:`promptseg.encoders.engine_sam2.Sam2EngineImageEncoder`."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from promptseg.decoders.engine import DecoderEngine, ShapeLimits, run_decoder_engine
from promptseg.decoders.sam2 import LowResCleanup, Sam2Decoder
from promptseg.prompts.batch import PromptBatch
from promptseg.sam2.modeling.features import MultiScaleFeatures
from promptseg.sam2.modeling.sam2_base import SAM2Base


class Sam2EngineDecoder(Sam2Decoder):
    """Decodes packed SAM 2 prompts with a batched-decoder engine (``export_sam2_onnx_decoder``),
    ``limits.max_prompts`` prompts on at most ``limits.max_images`` images per call. The multimask
    choice is the model's ``MaskDecoder.select_masks`` (SAM 2's dynamic fall-back included);
    post-processing is :class:`~promptseg.decoders.sam2.Sam2Decoder`'s."""

    def __init__(
        self,
        engine: DecoderEngine,
        model: SAM2Base,
        limits: Optional[ShapeLimits] = None,
        cleanup: Optional[LowResCleanup] = None,
    ) -> None:
        """
        Args:
            engine: runs the decoder graph.
            model: the SAM 2 model the graph was exported from (its multimask choice and sizes).
            limits: the shapes the engine takes (``promptseg.export.profiles.EngineLimits``); None: no
                limit (ONNX Runtime).
            cleanup: the post-processing's hole / sprinkle removal (``promptseg.amg.regions.RegionCleanup``).
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
