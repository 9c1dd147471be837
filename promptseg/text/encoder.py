"""The concept encoder interface: texts and image crops into one L2-normalised space.

A :class:`ConceptEncoder` maps phrases (``encode_text``) and object crops (``encode_images``) to
(N, dim) float32 unit vectors, so a dot product is a cosine similarity. Backends implement
``tokenize`` and the two feature methods; the public methods validate input and normalise.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

Crops = Union[Sequence[np.ndarray], torch.Tensor]


@dataclass(frozen=True)
class TextReading:
    """How an encoder reads a phrase.

    Attributes:
        text: the phrase.
        known: its words that the encoder knows and that carry meaning (normalised, in order).
        unknown: its words outside the encoder's vocabulary, as written (they carry nothing).
        open_vocabulary: the encoder reads any word (then ``known`` is every word and ``unknown`` empty).
    """

    text: str
    known: tuple[str, ...]
    unknown: tuple[str, ...] = ()
    open_vocabulary: bool = False

    @classmethod
    def open(cls, text: str) -> "TextReading":
        """The reading of an encoder that knows every word."""
        return cls(text, tuple(text.split()), (), True)


class ConceptEncoder(torch.nn.Module):
    """A CLIP-style dual encoder (abstract).

    Attributes:
        dim: width of the joint embedding.
        context_length: most tokens a text may have; longer texts are truncated with a warning.
        name: a short description (backend and model).
        open_vocabulary: whether every word is read (True unless a backend has a fixed vocabulary).
    """

    dim: int
    context_length: int
    name: str = "concept encoder"
    open_vocabulary: bool = True

    # -------------------------------------------------------------- backends implement
    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """(N, context_length) int64 tokens of validated ``texts`` and, per text, whether it was truncated."""
        raise NotImplementedError

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, dim) unnormalised text features of (N, context_length) tokens (differentiable)."""
        raise NotImplementedError

    def preprocess(self, crops: list[np.ndarray]) -> torch.Tensor:
        """(N, 3, S, S) float input of the image tower for (H, W, 3) uint8 crops."""
        raise NotImplementedError

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, dim) unnormalised image features of preprocessed pixels (differentiable)."""
        raise NotImplementedError

    def read_text(self, text: str) -> TextReading:
        """Which words of ``text`` the encoder knows (every word, unless a backend has a fixed vocabulary)."""
        return TextReading.open(text)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """The words that carry meaning, for a fixed vocabulary; empty for an open one."""
        return ()

    # -------------------------------------------------------------- public API
    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        return torch.device("cpu")

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(N, dim) float32 L2-normalised embeddings of N phrases, on the encoder's device.

        Raises:
            TypeError: ``texts`` is a single string rather than a list, or holds a non-string.
            ValueError: ``texts`` is empty or holds an empty (or blank) string.
        """
        texts = check_texts(texts)
        tokens, truncated = self.tokenize(texts)
        for text, cut in zip(texts, truncated):
            if cut:
                warnings.warn(
                    f"text {text[:60]!r}... is longer than the concept encoder's context of "
                    f"{self.context_length} tokens; it was truncated",
                    stacklevel=2,
                )
        with torch.no_grad():  # a context, not the decorator: the warning above then names the caller's line
            features = self.text_features(tokens.to(self.device))
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def encode_images(self, crops: Crops) -> torch.Tensor:
        """(N, dim) float32 L2-normalised embeddings of N crops: a list of (H, W, 3) uint8 RGB
        arrays (sizes may differ) or an (N, H, W, 3) uint8 tensor. Caller arrays are not modified."""
        arrays = check_crops(crops)
        pixels = self.preprocess(arrays).to(self.device)
        return F.normalize(self.image_features(pixels).float(), dim=-1)

    def similarity(self, texts: list[str], crops: Crops) -> torch.Tensor:
        """(T, N) cosine similarity of each text with each crop."""
        return self.encode_text(texts) @ self.encode_images(crops).T


def check_texts(texts: object) -> list[str]:
    """``texts`` as a list of non-empty strings, or a clear TypeError / ValueError."""
    if isinstance(texts, str):
        raise TypeError(f"expected a list of strings, got one string {texts[:60]!r}; wrap it in a list: [text]")
    if isinstance(texts, (np.ndarray, torch.Tensor)) or not isinstance(texts, Sequence):
        raise TypeError(f"expected a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError("expected at least one text, got an empty list")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"expected a list of strings, got {type(text).__name__} at index {index}")
        if not text.strip():
            raise ValueError(f"expected non-empty text, got {text!r} at index {index}")
    return list(texts)


def check_text(text: object, name: str = "text") -> str:
    """One non-empty string, or a clear TypeError (a list instead of a string included) / ValueError."""
    if isinstance(text, (list, tuple)):
        raise TypeError(f"{name} must be one string, got a {type(text).__name__} of {len(text)}; pass one phrase")
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{name} must be non-empty, got {text!r}")
    return text


def check_crops(crops: object) -> list[np.ndarray]:
    """``crops`` as a non-empty list of (H, W, 3) uint8 arrays, or a clear TypeError / ValueError."""
    if isinstance(crops, torch.Tensor):
        if crops.dtype != torch.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"expected an (N, H, W, 3) uint8 tensor of crops, got {tuple(crops.shape)} {crops.dtype}")
        crops = list(crops.cpu().numpy())
    if isinstance(crops, np.ndarray):
        raise TypeError(
            f"expected a list of (H, W, 3) uint8 crops, got one array of shape {crops.shape}; wrap it in a list"
        )
    if not isinstance(crops, Sequence):
        raise TypeError(f"expected a list of (H, W, 3) uint8 crops, got {type(crops).__name__}")
    if len(crops) == 0:
        raise ValueError("expected at least one crop, got an empty list")
    for index, crop in enumerate(crops):
        if not isinstance(crop, np.ndarray):
            raise TypeError(f"expected (H, W, 3) uint8 numpy crops, got {type(crop).__name__} at index {index}")
        if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3 or min(crop.shape[:2]) < 1:
            raise ValueError(f"expected an (H, W, 3) uint8 crop, got shape {crop.shape} {crop.dtype} at index {index}")
    return list(crops)
