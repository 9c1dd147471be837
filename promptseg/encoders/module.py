"""The image encoder that runs the model's own ``image_encoder`` module."""

from __future__ import annotations

import torch

from promptseg.encoders.base import ImageEncoder
from promptseg.modeling import Sam


class ModuleImageEncoder(ImageEncoder):
    """``model.image_encoder`` on ``model.preprocess``-ed images, as the official predictor runs them.

    The module is looked up on each call, so a module put in its place later (for example
    ``model.image_encoder = torch.compile(model.image_encoder)``) is the one that runs.
    """

    def __init__(self, model: Sam) -> None:
        self.model = model

    @property
    def img_size(self) -> int:
        return self.model.image_encoder.img_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.preprocess(image)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images)
        return self.model.image_encoder(images)

    def __repr__(self) -> str:
        module = type(self.model.image_encoder).__name__
        return f"{type(self).__name__}({module}, img_size={self.img_size}, device={self.device}, dtype={self.dtype})"
