"""The bundled concept encoder: a small CLIP-style dual encoder trained on captioned synthetic crops.

Text tower: the mean of word embeddings -> an MLP.
Image tower: a 4-stage CNN on 56x56 crops (strided, batch-normalised) -> global average -> linear. Both end in ``dim`` features,
L2-normalised by :class:`promptseg.text.encoder.ConceptEncoder`. Weights and the configuration
live in one safetensors file (the configuration in its metadata).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from promptseg.checkpoint import read_safetensors, safetensors_metadata
from promptseg.errors import CheckpointError
from promptseg.io import atomic_path
from promptseg.text.encoder import ConceptEncoder, TextReading
from promptseg.text.tokenizer import WordTokenizer, default_words

DEFAULT_CONFIG = {"dim": 128, "width": 128, "context_length": 16, "channels": [24, 48, 96, 128], "image_size": 56,
                  "threshold": 0.5}


class TextTower(torch.nn.Module):
    """(N, L) int64 tokens -> (N, dim) features: the mean of the word embeddings through an MLP
    (a bag of words: the vocabulary's attributes do not depend on word order)."""

    def __init__(self, vocabulary: int, width: int, dim: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocabulary, width, padding_idx=0)
        self.mlp = torch.nn.Sequential(
            torch.nn.LayerNorm(width), torch.nn.Linear(width, 2 * width), torch.nn.GELU(), torch.nn.Linear(2 * width, dim)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = (tokens != 0).unsqueeze(-1).to(self.embedding.weight.dtype)
        return self.mlp((self.embedding(tokens) * keep).sum(1) / keep.sum(1).clamp(min=1))


class ImageTower(torch.nn.Module):
    """(N, 3, S, S) float pixels in [-0.5, 0.5] -> (N, dim) features: strided convolutions, then the
    mean and the max of the last feature map."""

    def __init__(self, channels: list[int], dim: int) -> None:
        super().__init__()
        layers, previous = [], 3
        for index, width in enumerate(channels):
            kernel, stride = (4, 2) if index == 0 else (3, 2 if index < len(channels) - 1 else 1)
            layers += [
                torch.nn.Conv2d(previous, width, kernel, stride=stride, padding=1, bias=False),
                torch.nn.BatchNorm2d(width),
                torch.nn.ReLU(inplace=True),
            ]
            previous = width
        self.stages = torch.nn.Sequential(*layers)
        self.projection = torch.nn.Linear(2 * previous, dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.stages(pixels)
        return self.projection(torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1))


class BundledConceptEncoder(ConceptEncoder):
    """The small dual encoder shipped with promptseg (see ``promptseg/weights/CONCEPT_MODEL_CARD.md``).

    It knows the synthetic vocabulary only (:mod:`promptseg.text.vocabulary`): colours, shapes and
    fills it can see in a crop. Size and position words are accepted but carry nothing (a crop
    does not show them); other words are left out (:meth:`read_text` names them, and text prompts
    and ``find_instances`` warn about them, :mod:`promptseg.text.understanding`).
    """

    name = "bundled concept encoder (synthetic vocabulary)"
    open_vocabulary = False

    def __init__(self, config: dict | None = None, words: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        self.words = tuple(words or default_words())
        self.dim = int(self.config["dim"])
        self.context_length = int(self.config["context_length"])
        self.image_size = int(self.config["image_size"])
        self.default_threshold = float(self.config["threshold"])
        self.tokenizer = WordTokenizer(self.words, self.context_length)
        c = self.config
        self.text = TextTower(len(self.words), c["width"], self.dim)
        self.image = ImageTower(list(c["channels"]), self.dim)
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(10.0))))

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        return self.tokenizer(texts)

    def read_text(self, text: str) -> TextReading:
        """Its vocabulary's words in ``text`` (known) and the other words (unknown: they carry nothing)."""
        known, unknown = self.tokenizer.read(text)
        return TextReading(text, known, unknown)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self.tokenizer.content_words()

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)

    def preprocess(self, crops: list[np.ndarray]) -> torch.Tensor:
        """(N, 3, S, S) float32 in [-0.5, 0.5], S = ``image_size``: each crop resized bilinearly."""
        side = self.image_size
        resized = [
            np.asarray(Image.fromarray(crop).resize((side, side), Image.BILINEAR)) if crop.shape[:2] != (side, side) else crop
            for crop in crops
        ]
        return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255.0 - 0.5

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image(pixels)

    # ------------------------------------------------------------------ files
    def save(self, path: Union[str, Path], extra_metadata: dict | None = None) -> None:
        """Write weights + configuration to one safetensors file (atomically)."""
        path = Path(path)
        metadata = {"config": json.dumps(self.config), "words": json.dumps(self.words), **(extra_metadata or {})}
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        with atomic_path(path) as temporary:
            save_file(tensors, str(temporary), metadata=metadata)

    @classmethod
    def from_file(cls, path: Union[str, Path], device: Union[str, torch.device, None] = None) -> "BundledConceptEncoder":
        """Load a file written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            CheckpointError: not a whole safetensors file, or not one written by :meth:`save`.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"concept encoder weights not found: {path}")
        metadata = safetensors_metadata(path)
        if "config" not in metadata:
            raise CheckpointError(f"{path} is not a promptseg concept encoder file (no 'config' in its metadata)")
        try:
            model = cls(json.loads(metadata["config"]), tuple(json.loads(metadata["words"])))
            model.load_state_dict(read_safetensors(path), strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(f"{path} does not hold a concept encoder this promptseg can load ({error})") from None
        return model.to(device or "cpu").eval()
