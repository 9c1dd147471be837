"""Writing and reading training checkpoints.

``model.pth`` (a plain fp32 state dict, loadable by ``build_sam`` and by the
official ``segment_anything``), ``model.safetensors`` (the same weights), and
``train_state.pt`` (optimizer, schedule, position in the data, RNG) for ``--resume``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

WEIGHTS_PTH = "model.pth"
WEIGHTS_SAFETENSORS = "model.safetensors"
TRAIN_STATE = "train_state.pt"


def _atomic_write(path: Path, write: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    os.replace(temporary, path)


def fp32_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous fp32 CPU tensors."""
    return {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}


def save_weights(model: nn.Module, out_dir: Path) -> None:
    """Write ``model.pth`` and ``model.safetensors`` into ``out_dir``."""
    state = fp32_state_dict(model)
    _atomic_write(out_dir / WEIGHTS_PTH, lambda path: torch.save(state, path))
    _atomic_write(out_dir / WEIGHTS_SAFETENSORS, lambda path: save_file(state, str(path)))


def save_train_state(out_dir: Path, state: dict[str, Any]) -> None:
    """Write ``train_state.pt`` (tensors, numbers, strings and containers of them only)."""
    _atomic_write(out_dir / TRAIN_STATE, lambda path: torch.save(state, path))


def load_train_state(out_dir: Path) -> dict[str, Any]:
    """Read ``train_state.pt`` from ``out_dir`` (weights-only unpickling)."""
    path = out_dir / TRAIN_STATE
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: {path} does not exist (no checkpoint was written to {out_dir})")
    return torch.load(path, map_location="cpu", weights_only=True)
