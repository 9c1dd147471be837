"""``EngineImageEncoder``: a :class:`promptseg.encoders.ImageEncoder` that runs an exported image-encoder
graph (``promptseg.export.export_onnx_encoder``, input ``images``) in an engine: TensorRT, or ONNX
Runtime; and :class:`Engine`, what such an engine is (the decoders' engines are the same kind)."""

from __future__ import annotations

from typing import Mapping, Protocol

import torch

from promptseg.encoders.base import ImageEncoder
from promptseg.modeling import Sam
from promptseg.modeling.sam import normalize_and_pad


class Engine(Protocol):
    """Runs one exported graph: input tensors by name in, output tensors by name out."""

    device: torch.device

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


class EngineImageEncoder(ImageEncoder):
    """(B, 3, S, S) -> (B, C, h, w) embeddings from an encoder engine, for any B (``max_images`` per run);
    preprocessing is ``Sam.preprocess``'s arithmetic, on the engine's device."""

    def __init__(
        self,
        engine: Engine,
        img_size: int,
        max_images: int,
        pixel_mean: torch.Tensor,
        pixel_std: torch.Tensor,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """
        Args:
            engine: runs the graph of ``export_onnx_encoder`` (input ``images``, output ``image_embeddings``).
            img_size: the side S of the graph's input.
            max_images: the most images the engine takes per run.
            pixel_mean, pixel_std: (3,) or (3, 1, 1) per-channel normalisation of 0..255 RGB.
            dtype: the dtype of the preprocessed images handed to the engine.
        """
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        self.engine = engine
        self._img_size = img_size
        self.max_images = max_images
        self.pixel_mean = pixel_mean.detach().to(device=engine.device, dtype=torch.float32).reshape(-1, 1, 1)
        self.pixel_std = pixel_std.detach().to(device=engine.device, dtype=torch.float32).reshape(-1, 1, 1)
        self._dtype = dtype

    @classmethod
    def for_model(cls, engine: Engine, model: Sam, max_images: int) -> "EngineImageEncoder":
        """The encoder engine built from ``model``: its input size, normalisation constants and dtype."""
        return cls(engine, model.image_encoder.img_size, max_images, model.pixel_mean, model.pixel_std, model.dtype)

    @property
    def img_size(self) -> int:
        return self._img_size

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        image = image.to(self.device)
        return normalize_and_pad(image, self.pixel_mean, self.pixel_std, self.img_size, self.dtype)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images)
        chunks = images.split(self.max_images)
        return torch.cat([self.engine({"images": chunk})["image_embeddings"] for chunk in chunks])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.engine).__name__}, img_size={self.img_size}, device={self.device})"
