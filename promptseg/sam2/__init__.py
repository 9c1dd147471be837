"""SAM 2 / SAM 2.1 image models: a drop-in for the official ``sam2`` package's image API.

Change ``from sam2.build_sam import build_sam2`` to ``from promptseg.sam2.build_sam import build_sam2``
(and likewise ``sam2.sam2_image_predictor``, ``sam2.automatic_mask_generator``, ``sam2.modeling``,
``sam2.utils``); the official config names load without hydra and official checkpoints load
strictly, their video-only weights skipped. The main names are also here (imported on first use,
so that the model modules under ``promptseg.sam2.modeling`` import without the API above them).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SAM2AutomaticMaskGenerator": "promptseg.sam2.automatic_mask_generator",
    "SAM2Base": "promptseg.sam2.modeling.sam2_base",
    "SAM2ImagePredictor": "promptseg.sam2.sam2_image_predictor",
    "build_sam2": "promptseg.sam2.build_sam",
    "build_sam2_hf": "promptseg.sam2.build_sam",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'promptseg.sam2' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
