"""SAM 2 model type names for promptseg's commands (``--model sam2.1_hiera_t``), and building one.

A name is ``sam2.1_hiera_<size>`` or ``sam2_hiera_<size>``, size ``t``, ``s``, ``b+`` or ``l``
(the official config names' stems; the checkpoint stems ``tiny``, ``small``, ``base_plus`` and
``large`` work too). This module imports no model code until :func:`build_sam2_model` runs, so
the commands' argument parsers and ``promptseg.settings`` can ask :func:`is_sam2_model_type`.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

SIZE_NAMES = {"t": "t", "s": "s", "b+": "b+", "l": "l", "tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
"""Size suffixes of the model type names -> the config's size."""

SAM2_MODEL_TYPES: dict[str, str] = {}
"""Every SAM 2 model type name -> its official config name."""
for _suffix, _size in SIZE_NAMES.items():
    SAM2_MODEL_TYPES[f"sam2.1_hiera_{_suffix}"] = f"configs/sam2.1/sam2.1_hiera_{_size}.yaml"
    SAM2_MODEL_TYPES[f"sam2_hiera_{_suffix}"] = f"configs/sam2/sam2_hiera_{_size}.yaml"

SAM2_CHOICES = sorted(name for name in SAM2_MODEL_TYPES if name.rsplit("_", 1)[1] in ("t", "s", "b+", "l"))
"""The short names, as the commands list them."""


def is_sam2_model_type(model_type: Optional[str]) -> bool:
    """Whether ``model_type`` names a SAM 2 model (see the module docstring)."""
    return model_type in SAM2_MODEL_TYPES


def build_sam2_model(
    model_type: str,
    checkpoint: Optional[Union[str, "os.PathLike[str]"]] = None,
    device: Any = None,
    dtype: Any = None,
) -> Any:
    """The SAM 2 image model of ``model_type`` (``promptseg.sam2.build_sam.build_sam2`` of its official
    config, with the official post-processing options), the weights of an official checkpoint loaded
    strictly (None: random weights), on ``device`` (default CPU) in ``dtype`` (default float32), in eval mode.

    Raises:
        ValueError: an unknown model type (the message lists them).
    """
    if not is_sam2_model_type(model_type):
        raise ValueError(f"unknown SAM 2 model type {model_type!r}; expected one of {SAM2_CHOICES}")
    from promptseg.sam2.build_sam import build_sam2

    model = build_sam2(SAM2_MODEL_TYPES[model_type], checkpoint, device="cpu")
    return model.to(device=device, dtype=dtype)
