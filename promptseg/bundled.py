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


def bundled_weights_file(name: str, what: str = "bundled weights") -> Path:
    """Path of the file ``name`` in the installed package's ``weights/`` folder.

    Raises:
        FileNotFoundError: the installation lacks it (``what`` names it in the message).
    """
    path = Path(str(resources.files("promptseg") / "weights" / name))
    if not path.is_file():
        raise FileNotFoundError(f"the {what} are missing from this installation: {path}")
    return path


def bundled_checkpoint() -> Path:
    """Path of the bundled weights inside the installed package."""
    return bundled_weights_file(BUNDLED_WEIGHTS)


def build_bundled_sam(
    device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None, engine: str = "auto"
) -> Sam:
    """The bundled model, ready for ``SamPredictor``; ``engine`` as in :func:`promptseg.build.build_sam`: it is
    recorded, and an ONNX Runtime engine's export is made by ``promptseg.export.prepare_engine(model)``."""
    return build_sam(BUNDLED_MODEL_TYPE, checkpoint=bundled_checkpoint(), device=device, dtype=dtype, engine=engine)
