"""``EnginePredictor``: the ``SamPredictor`` API with the image encoder and the mask decoder run by
engines: callables on the exported graphs (TensorRT, or ONNX Runtime).

Everything around the networks (image checks, resizing, normalisation,
prompt validation and packing, mask upscaling and thresholding) is
``SamPredictor``'s own code; the image encoder is replaced by
:class:`EngineImageEncoder` and the decoder by an
:class:`~promptseg.export.engine_decoder.EngineDecoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from promptseg.export.engine_decoder import Engine, EngineDecoder
from promptseg.export.profiles import EngineLimits
from promptseg.modeling import Sam
from promptseg.predictor import SamPredictor


class EngineImageEncoder(nn.Module):
    """Stands in for ``ImageEncoderViT``: (B, 3, S, S) -> (B, C, h, w) float32 (h = S / patch size) from an encoder
    engine, for any B (run ``max_images`` at a time)."""

    def __init__(self, engine: Engine, img_size: int, max_images: int) -> None:
        super().__init__()
        self.engine = engine
        self.img_size = img_size
        self.max_images = max_images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        chunks = images.split(self.max_images)
        return torch.cat([self.engine({"images": chunk})["image_embeddings"] for chunk in chunks])


class EnginePredictor(SamPredictor):
    """``SamPredictor`` (``set_image``, ``predict``, ``predict_torch``, ``predict_many``,
    ``set_images``, ``predict_batch``) on an encoder engine and a batched-decoder engine."""

    def __init__(self, sam_model: Sam, encoder: Engine, decoder: Engine, limits: EngineLimits) -> None:
        """
        Args:
            sam_model: the model the engines were built from. Its normalisation
                constants, mask threshold and prompt-encoder sizes are used; its
                networks are not run, and it is not modified.
            encoder: runs the graph of ``export_onnx_encoder`` (input ``images``).
            decoder: runs the graph of ``export_onnx_batched_decoder``.
            limits: the shape limits the engines were built with.
        """
        shell = Sam(
            EngineImageEncoder(encoder, sam_model.image_encoder.img_size, limits.max_images),
            sam_model.prompt_encoder,
            sam_model.mask_decoder,
            pixel_mean=sam_model.pixel_mean.flatten().tolist(),
            pixel_std=sam_model.pixel_std.flatten().tolist(),
        )
        for name in ("pixel_mean", "pixel_std"):
            setattr(shell, name, getattr(shell, name).to(encoder.device))
        shell.mask_threshold = sam_model.mask_threshold
        shell.image_format = sam_model.image_format
        self.limits = limits
        engine_decoder = EngineDecoder(
            decoder, limits, sam_model.mask_decoder.num_mask_tokens, sam_model.prompt_encoder.mask_input_size[0]
        )
        super().__init__(shell, prompt_batch_size=limits.max_prompts, decoder=engine_decoder)

    @property
    def device(self) -> torch.device:
        return self.decoder.engine.device
