"""The small model shipped inside the package: a ``vit_tiny`` SAM trained by ``promptseg.train``
on synthetic scenes (see ``promptseg/weights/MODEL_CARD.md``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional, Union

import torch

from promptseg.build import build_sam
from promptseg.modeling import Sam

BUNDLED_MODEL_TYPE = "vit_tiny"
BUNDLED_WEIGHTS = "vit_tiny_synthetic.safetensors"
BUNDLED_DESCRIPTION = "vit_tiny (4.1M parameters, 256x256 input) trained on promptseg's synthetic scenes"


def bundled_checkpoint() -> Path:
    """Path of the bundled weights inside the installed package."""
    path = Path(str(resources.files("promptseg") / "weights" / BUNDLED_WEIGHTS))
    if not path.is_file():
        raise FileNotFoundError(f"the bundled weights are missing from this installation: {path}")
    return path


def build_bundled_sam(device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None) -> Sam:
    """The bundled model, ready for ``SamPredictor``."""
    return build_sam(BUNDLED_MODEL_TYPE, checkpoint=bundled_checkpoint(), device=device, dtype=dtype)
