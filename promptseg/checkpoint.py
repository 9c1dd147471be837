"""Reading checkpoints (.pth with weights_only, or .safetensors) and checking them against a model."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import nn

from promptseg.configs import CONFIGS, SamConfig
from promptseg.errors import CheckpointError

PathLike = Union[str, "os.PathLike[str]"]
_BLOCK_KEY = re.compile(r"^image_encoder\.blocks\.(\d+)\.")
_WRAPPER_KEYS = ("model", "state_dict")
EXTENSION_PREFIXES = ("text_prompt_encoder.",)
"""Key prefixes of promptseg additions that live outside the official ``Sam`` module tree (the text
prompt encoder): :func:`load_into` leaves them out, so a promptseg checkpoint loads into ``Sam``."""


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict onto the CPU without executing pickled code.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``. A dict wrapping the weights under
    ``"model"`` or ``"state_dict"`` (common in training checkpoints) is unwrapped.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is empty, unreadable, or not a state dict of tensors (named, with
            what the reader said).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {str(path)!r} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is an empty file (0 bytes): a download or copy that did not finish?"
        )
    if path.suffix == ".safetensors":
        state = read_safetensors(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle errors come in many types
            raise CheckpointError(
                f"could not read {str(path)!r} as a weights-only PyTorch checkpoint "
                f"(torch.load(weights_only=True) said: {error})"
            ) from error
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and set(state) == {key} and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(path)!r} does not hold a state dict of tensors")
    return dict(state)


def read_safetensors(path: PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, on the CPU.

    Raises:
        CheckpointError: the file is not a whole safetensors file (empty, truncated, a corrupt header).
    """
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError, OSError or ValueError
        raise CheckpointError(f"could not read {str(path)!r} as a safetensors file ({_reason(error)})") from None


def safetensors_metadata(path: PathLike) -> dict[str, str]:
    """The metadata (string -> string) stored in a ``.safetensors`` file's header.

    Raises:
        CheckpointError: the header cannot be read.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:  # as read_safetensors
        raise CheckpointError(f"could not read {str(path)!r} as a safetensors file ({_reason(error)})") from None


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text if len(text) <= 200 else text[:200] + '...'}"


def encoder_shape(state_dict: Mapping[str, torch.Tensor]) -> Optional[tuple[int, int]]:
    """(embed_dim, depth) of the image encoder in a SAM state dict, or None if it has none."""
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is None:
        return None
    blocks = {int(match.group(1)) for key in state_dict if (match := _BLOCK_KEY.match(key))}
    return patch.shape[0], (max(blocks) + 1 if blocks else 0)


def identify_model_type(
    state_dict: Mapping[str, torch.Tensor], configs: Mapping[str, SamConfig] = CONFIGS
) -> Optional[str]:
    """The registry name whose encoder width and depth match the state dict, or None."""
    shape = encoder_shape(state_dict)
    for name, config in configs.items():
        if shape == (config.encoder_embed_dim, config.encoder_depth):
            return name
    return None


def load_into(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    model_type: str,
    source: str,
    configs: Mapping[str, SamConfig] = CONFIGS,
) -> None:
    """Load ``state_dict`` into ``model`` strictly, explaining every mismatch. Keys under
    :data:`EXTENSION_PREFIXES` (weights of promptseg additions) are left out.

    Raises:
        CheckpointError: the file holds another model type (named), or keys are
            missing, unexpected, or of the wrong shape (listed).
    """
    found_type = identify_model_type(state_dict, configs)
    if found_type is not None and found_type != model_type:
        embed_dim, depth = encoder_shape(state_dict) or (0, 0)
        raise CheckpointError(
            f"{source} holds a {found_type} model (image encoder width {embed_dim}, {depth} blocks), "
            f"but model_type={model_type!r} was requested; build it with model_type={found_type!r}"
        )
    state_dict = {key: value for key, value in state_dict.items() if not key.startswith(EXTENSION_PREFIXES)}
    problems = state_dict_mismatches(model.state_dict(), state_dict)
    if problems:
        raise CheckpointError(f"{source} does not match a {model_type} model: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def state_dict_mismatches(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``given`` from loading strictly where ``expected`` (a model's state dict) is wanted:
    up to three lines, "missing keys (n): ...", "unexpected keys (n): ..." and "keys of the wrong
    shape (n): key: checkpoint (...), model (...)", each listing at most 20 keys; empty when it matches."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong_shape = sorted(
        f"{key}: checkpoint {tuple(given[key].shape)}, model {tuple(expected[key].shape)}"
        for key in set(expected) & set(given)
        if given[key].shape != expected[key].shape
    )
    found = {"missing keys": missing, "unexpected keys": unexpected, "keys of the wrong shape": wrong_shape}
    return [f"{what} ({len(keys)}): {_listing(keys)}" for what, keys in found.items() if keys]


def _listing(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")
