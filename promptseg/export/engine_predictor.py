"""``EnginePredictor``: the ``SamPredictor`` API with the image encoder and the mask decoder run by
engines: callables on the exported graphs (TensorRT, or ONNX Runtime).

Everything around the networks (image checks, resizing, prompt validation and packing, mask
upscaling and thresholding) is ``SamPredictor``'s own code; the predictor's two seams take an
:class:`~promptseg.export.engine_encoder.EngineImageEncoder` and an
:class:`~promptseg.export.engine_decoder.EngineDecoder`.
"""

from __future__ import annotations

import torch

from promptseg.export.engine_decoder import Engine, EngineDecoder
from promptseg.export.engine_encoder import EngineImageEncoder
from promptseg.export.profiles import EngineLimits
from promptseg.modeling import Sam
from promptseg.predictor import SamPredictor


class EnginePredictor(SamPredictor):
    """``SamPredictor`` (``set_image``, ``predict``, ``predict_torch``, ``predict_many``,
    ``set_images``, ``predict_batch``) on an encoder engine and a batched-decoder engine."""

    def __init__(self, sam_model: Sam, encoder: Engine, decoder: Engine, limits: EngineLimits) -> None:
        """
        Args:
            sam_model: the model the engines were built from. Its normalisation
                constants, mask threshold, image format and prompt-encoder sizes are used; its
                networks are not run, and it is not modified.
            encoder: runs the graph of ``export_onnx_encoder`` (input ``images``).
            decoder: runs the graph of ``export_onnx_batched_decoder``.
            limits: the shape limits the engines were built with.
        """
        self.limits = limits
        engine_decoder = EngineDecoder(
            decoder, limits, sam_model.mask_decoder.num_mask_tokens, sam_model.prompt_encoder.mask_input_size[0]
        )
        super().__init__(
            sam_model,
            prompt_batch_size=limits.max_prompts,
            decoder=engine_decoder,
            encoder=EngineImageEncoder.for_model(encoder, sam_model, limits.max_images),
        )

    @property
    def device(self) -> torch.device:
        return self.decoder.engine.device
