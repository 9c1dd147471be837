"""Choosing and loading a concept encoder: the bundled one, or open_clip with local weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from promptseg.bundled import bundled_weights_file
from promptseg.text.encoder import ConceptEncoder

BACKENDS = ("bundled", "open_clip")
BUNDLED_CONCEPT_WEIGHTS = "concept_tiny_synthetic.safetensors"
BUNDLED_CONCEPT_DESCRIPTION = "concept_tiny: a small CLIP-style dual encoder trained on promptseg's captioned synthetic crops"


def bundled_concept_checkpoint() -> Path:
    """Path of the bundled concept encoder's weights inside the installed package."""
    return bundled_weights_file(BUNDLED_CONCEPT_WEIGHTS, "bundled concept encoder weights")


def load_concept_encoder(
    backend: str = "bundled",
    model: Optional[str] = None,
    checkpoint: Optional[Union[str, Path]] = None,
    device: Union[str, torch.device, None] = None,
) -> ConceptEncoder:
    """A ready concept encoder.

    Args:
        backend: "bundled" (the small synthetic-vocabulary encoder shipped with promptseg) or
            "open_clip" (needs ``pip install "promptseg[clip]"``).
        model: the open_clip architecture, e.g. "ViT-B-16" (open_clip only; default "ViT-B-16").
        checkpoint: weights file (or, for open_clip, folder); required for open_clip, which never
            downloads; for "bundled" a file written by ``promptseg train --concepts`` (default: the shipped one).
        device: where to run (default cpu).
    """
    if backend == "bundled":
        if model is not None:
            raise ValueError(f"model names an open_clip architecture; the bundled backend takes none, got {model!r}")
        from promptseg.text.bundled_model import BundledConceptEncoder

        return BundledConceptEncoder.from_file(checkpoint or bundled_concept_checkpoint(), device)
    if backend == "open_clip":
        if checkpoint is None:
            raise ValueError(
                "the open_clip backend needs checkpoint= (a local weights file or folder, e.g. "
                "open_clip_pytorch_model.bin for ViT-B-16); promptseg never downloads weights"
            )
        from promptseg.text.open_clip_backend import OpenClipConceptEncoder

        return OpenClipConceptEncoder(model or "ViT-B-16", checkpoint, device)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
