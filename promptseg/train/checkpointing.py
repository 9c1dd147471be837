"""Writing and reading training checkpoints.

``model.pth`` (a plain fp32 state dict, loadable by ``build_sam`` and by the
official ``segment_anything``), ``model.safetensors`` (the same weights), and
``train_state.pt`` (optimizer, schedule, position in the data, RNG) for ``--resume``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from promptseg.io import atomic_path

WEIGHTS_PTH = "model.pth"
WEIGHTS_SAFETENSORS = "model.safetensors"
TRAIN_STATE = "train_state.pt"


def fp32_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous fp32 CPU tensors."""
    return {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}


def save_weights(model: nn.Module, out_dir: Path) -> None:
    """Write ``model.pth`` and ``model.safetensors`` into ``out_dir``."""
    state = fp32_state_dict(model)
    with atomic_path(out_dir / WEIGHTS_PTH) as temporary:
        torch.save(state, temporary)
    with atomic_path(out_dir / WEIGHTS_SAFETENSORS) as temporary:
        save_file(state, str(temporary))


def save_train_state(out_dir: Path, state: dict[str, Any]) -> None:
    """Write ``train_state.pt`` (tensors, numbers, strings and containers of them only)."""
    with atomic_path(out_dir / TRAIN_STATE) as temporary:
        torch.save(state, temporary)


def load_train_state(out_dir: Path) -> dict[str, Any]:
    """Read ``train_state.pt`` from ``out_dir`` (weights-only unpickling)."""
    path = out_dir / TRAIN_STATE
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} does not exist (no checkpoint was written to {out_dir})")
    return torch.load(path, map_location="cpu", weights_only=True)
