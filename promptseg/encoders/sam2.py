"""The image encoder of SAM 2 models: the model's Hiera trunk and FPN neck, in SAM 2's square frame.

Images enter :class:`~promptseg.prompts.frames.SquareResize` (stretched to S x S on a 0..1 scale,
as the official ``SAM2Transforms``), are normalised with the ImageNet mean and std
(:func:`normalize_unit_rgb`) and encoded by :meth:`SAM2Base.encode_image` into
:class:`~promptseg.encoders.features.MultiScaleFeatures`: the embedding (with ``no_mem_embed``)
and the two high-resolution levels the decoder adds in its upscaling.
"""

from __future__ import annotations

from typing import Callable

import torch

from promptseg.encoders.base import ImageEncoder
from promptseg.encoders.features import MultiScaleFeatures
from promptseg.prompts.frames import SquareResize
from promptseg.sam2.modeling.sam2_base import SAM2Base

PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
"""SAM 2's normalisation of 0..1 RGB (ImageNet's)."""


def normalize_unit_rgb(image: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) float RGB on a 0..1 scale -> normalised with :data:`PIXEL_MEAN` / :data:`PIXEL_STD`,
    in float32 (the arithmetic of torchvision's ``Normalize``: subtract, then divide)."""
    mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32, device=image.device).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=torch.float32, device=image.device).view(3, 1, 1)
    return (image.float() - mean) / std


class Sam2ImageEncoder(ImageEncoder):
    """``SAM2Base.encode_image`` on SAM 2's frame, as the official ``SAM2ImagePredictor`` runs it.

    With ``compile=True`` the image side (trunk, neck and the decoder's high-res projections) runs
    through ``torch.compile`` (static shapes; the first call of a batch size compiles).
    """

    def __init__(self, model: SAM2Base, compile: bool = False) -> None:
        if not isinstance(model, SAM2Base):
            raise TypeError(f"Sam2ImageEncoder takes a promptseg.sam2 SAM2Base model, got {type(model).__name__}")
        self.model = model
        self.compiled = compile
        self._encode: Callable[[torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]] = (
            torch.compile(model.encode_image, dynamic=False) if compile else model.encode_image
        )

    @property
    def img_size(self) -> int:
        return self.model.image_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def frame(self) -> SquareResize:
        return SquareResize(self.img_size)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """(..., 3, S, S) float RGB on a 0..1 scale (``SquareResize.apply_image``) -> normalised, in
        :attr:`dtype` on :attr:`device`."""
        return normalize_unit_rgb(image.to(self.device)).to(self.dtype)

    def encode(self, images: torch.Tensor) -> MultiScaleFeatures:
        """(B, 3, S, S) preprocessed images -> their :class:`MultiScaleFeatures`."""
        self.check_images(images)
        embedding, high_res = self._encode(images)
        return MultiScaleFeatures(embedding, tuple(high_res))

    def __repr__(self) -> str:
        compiled = ", compiled" if self.compiled else ""
        return f"{type(self).__name__}(img_size={self.img_size}, device={self.device}, dtype={self.dtype}{compiled})"
