"""Loading official SAM 2 / 2.1 checkpoints (``{"model": state_dict}``) into the image model.

The weights of the official model's video-only parts (:data:`VIDEO_ONLY_PREFIXES`) are left out,
and one info line names them; every other key must match the model exactly (``strict=True``).
"""

from __future__ import annotations

import logging
import os
from typing import Mapping, Optional, Union

import torch
from torch import nn

from promptseg.checkpoint import read_state_dict, state_dict_mismatches
from promptseg.errors import CheckpointError
from promptseg.sam2.configs import HIERA_SIZES
from promptseg.sam2.modeling.sam2_base import VIDEO_ONLY_PREFIXES

__all__ = ["hiera_size", "load_checkpoint", "load_image_state_dict", "split_video_weights"]

logger = logging.getLogger(__name__)


def split_video_weights(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the image model's weights, the sorted video-only prefixes that were present) of a full state dict."""
    image, skipped = {}, set()
    for key, value in state_dict.items():
        prefix = next((p for p in VIDEO_ONLY_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            image[key] = value
        else:
            skipped.add(prefix.rstrip("."))
    return image, sorted(skipped)


def hiera_size(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The Hiera size ("t", "s", "b+", "l") whose width and depth match the state dict, or None."""
    patch = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None:
        return None
    blocks = {key.split(".")[3] for key in state_dict if key.startswith("image_encoder.trunk.blocks.")}
    for size, spec in HIERA_SIZES.items():
        if (patch.shape[0], len(blocks)) == (spec["trunk"]["embed_dim"], spec["blocks"]):
            return size
    return None


def load_image_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "the state dict"
) -> None:
    """Load the image weights of a full official state dict into ``model`` strictly.

    Raises:
        CheckpointError: the weights are of another size (named), or keys are missing,
            unexpected or of the wrong shape (listed).
    """
    image, skipped = split_video_weights(state_dict)
    if skipped:
        names = ", ".join(skipped)
        logger.info("%s: skipped the video-only weights of %s (promptseg builds SAM 2 image models)", source, names)
    expected = model.state_dict()
    found, wanted = hiera_size(image), hiera_size(expected)
    if found is not None and wanted is not None and found != wanted:
        raise CheckpointError(
            f"{source} holds a Hiera-{found} SAM 2 model, but the config builds Hiera-{wanted}; "
            f"use the sam2.1_hiera_{found} (or sam2_hiera_{found}) config"
        )
    problems = state_dict_mismatches(expected, image)
    if problems:
        raise CheckpointError(f"{source} does not match the SAM 2 image model: " + "; ".join(problems))
    model.load_state_dict(image, strict=True)


def load_checkpoint(model: nn.Module, ckpt_path: Union[str, "os.PathLike[str]"]) -> None:
    """Read an official checkpoint (weights only) and load its image weights into ``model``."""
    load_image_state_dict(model, read_state_dict(ckpt_path), source=repr(str(ckpt_path)))

