"""The ImageEncoder seam: preprocessed images in, image embeddings out.

Every caller that embeds images (the predictor, and through it the mask generator and the
tools built on them) holds an :class:`ImageEncoder` and calls :meth:`ImageEncoder.preprocess` on
each resized image, then :meth:`ImageEncoder.encode` on a batch; none of them knows which
implementation runs. Implementations:

* :class:`promptseg.encoders.module.ModuleImageEncoder`: the model's ``image_encoder`` module
  (eager, or whatever module was put there, e.g. a ``torch.compile``-d one);
* :class:`promptseg.encoders.engine.EngineImageEncoder`: an exported encoder graph in ONNX Runtime
  or TensorRT; :class:`promptseg.encoders.onnxruntime.OnnxRuntimeImageEncoder`, the CPU engine's.
* :class:`promptseg.encoders.sam2.Sam2ImageEncoder`: a SAM 2 model's Hiera trunk and neck, in SAM 2's
  square frame, giving :class:`~promptseg.encoders.features.MultiScaleFeatures`.

A new implementation (a compiled module, an ONNX Runtime session of its own) subclasses
:class:`ImageEncoder`; its class name is what ``repr(SamPredictor)`` shows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from promptseg.encoders.features import Features
from promptseg.prompts.frames import Frame, ResizeLongestSide


class ImageEncoder(ABC):
    """Embeds preprocessed (B, 3, S, S) images as (B, C, h, w) image embeddings (h = w = S / patch size)."""

    @property
    @abstractmethod
    def img_size(self) -> int:
        """The side S of the square (padded) input frame."""

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where :meth:`preprocess` puts the images and :meth:`encode` takes them."""

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """The dtype of the preprocessed images :meth:`encode` takes."""

    @property
    def frame(self) -> Frame:
        """How images, points and boxes enter the encoder's input (``apply_image``, ``apply_coords``,
        ...): SAM's :class:`~promptseg.prompts.frames.ResizeLongestSide` unless an encoder says otherwise."""
        return ResizeLongestSide(self.img_size)

    @abstractmethod
    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """(..., 3, h, w) image from ``frame.apply_image`` (SAM: 0..255 RGB with max(h, w) = S) ->
        (..., 3, S, S) normalised (SAM: zero-padded at bottom/right), in :attr:`dtype` on
        :attr:`device` (``Sam.preprocess``)."""

    @abstractmethod
    def encode(self, images: torch.Tensor) -> "Features":
        """(B, 3, S, S) preprocessed images (from :meth:`preprocess`) -> (B, C, h, w) image embeddings
        (SAM 2: :class:`~promptseg.encoders.features.MultiScaleFeatures`).

        Raises:
            ValueError: ``images`` is not (B, 3, S, S) with B >= 1 (see :meth:`check_images`).
        """

    def check_images(self, images: torch.Tensor) -> None:
        """Raise a ValueError unless ``images`` is a (B, 3, S, S) tensor with B >= 1."""
        side = self.img_size
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"{type(self).__name__}.encode takes a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 4 or images.shape[0] < 1 or tuple(images.shape[1:]) != (3, side, side):
            raise ValueError(
                f"{type(self).__name__}.encode takes preprocessed images (B, 3, {side}, {side}) with B >= 1, "
                f"got {tuple(images.shape)}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(img_size={self.img_size}, device={self.device}, dtype={self.dtype})"
