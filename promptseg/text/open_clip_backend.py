"""The open_clip backend: any open_clip architecture with weights from a local file or folder.

Nothing is ever downloaded: the model is built with random weights (``pretrained=None``) and the
named checkpoint loaded into it. Needs ``pip install "promptseg[clip]"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from PIL import Image

from promptseg.errors import CheckpointError, optional_module
from promptseg.text.encoder import ConceptEncoder

CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
FOLDER_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def import_open_clip() -> Any:
    """The ``open_clip`` module, or an ImportError saying how to install it."""
    return optional_module("open_clip", "the open_clip concept encoder", 'pip install "promptseg[clip]"')


def resolve_checkpoint(checkpoint: Union[str, Path]) -> Path:
    """The weights file ``checkpoint`` names: a file, or a folder holding one (``open_clip_model.safetensors``,
    ``open_clip_pytorch_model.bin``, or its only .safetensors/.bin/.pt/.pth file)."""
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in FOLDER_NAMES:
            if (path / name).is_file():
                return path / name
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
        if len(found) == 1:
            return found[0]
        raise FileNotFoundError(
            f"the folder {path} holds {len(found)} weight files ({', '.join(p.name for p in found) or 'none'}); "
            f"expected one of {FOLDER_NAMES} or a single {'/'.join(CHECKPOINT_SUFFIXES)} file"
        )
    raise FileNotFoundError(
        f"CLIP checkpoint not found: {path} (promptseg never downloads weights; name a local file or folder)"
    )


class OpenClipConceptEncoder(ConceptEncoder):
    """An open_clip model as a :class:`ConceptEncoder`.

    Args:
        model_name: an open_clip architecture (``open_clip.list_models()``), e.g. ``"ViT-B-16"``.
        checkpoint: a local weights file or folder; None keeps the random weights (tests only).
        device: where to run.
    """

    # A fixed cosine cut-off, for callers that want one; find_instances' default for an open-vocabulary
    # encoder is the calibrated rule of promptseg.text.matching instead (no fixed scale fits every model).
    default_threshold = 0.25

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        checkpoint: Optional[Union[str, Path]] = None,
        device: Union[str, torch.device, None] = None,
    ) -> None:
        super().__init__()
        open_clip = import_open_clip()
        if model_name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {model_name!r}; expected one of open_clip.list_models()")
        path = resolve_checkpoint(checkpoint) if checkpoint is not None else None
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
        if path is not None:
            if path.stat().st_size == 0:
                raise CheckpointError(f"CLIP checkpoint {path} is an empty file (0 bytes)")
            try:
                open_clip.load_checkpoint(model, str(path))
            except Exception as error:  # torch, safetensors and open_clip each raise their own kinds
                raise CheckpointError(
                    f"could not load {path} into open_clip {model_name} ({type(error).__name__}: {str(error)[:300]})"
                ) from None
        self.model = model.to(device or "cpu").eval()
        self.transform = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.context_length = int(getattr(self.tokenizer, "context_length", None) or model.context_length)
        with torch.no_grad():
            self.dim = int(self.model.encode_text(self.tokenizer(["a"]).to(self.device)).shape[-1])
        self.name = f"open_clip {model_name} ({path if path else 'random weights'})"

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        tokens = self.tokenizer(texts)
        longer = self.tokenizer(texts, context_length=4 * self.context_length)
        truncated = ((longer != 0).sum(dim=1) > self.context_length).tolist()
        return tokens, truncated

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)

    def preprocess(self, crops: list[np.ndarray]) -> torch.Tensor:
        return torch.stack([self.transform(Image.fromarray(crop)) for crop in crops])

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        return self.model.encode_image(pixels.to(dtype))
