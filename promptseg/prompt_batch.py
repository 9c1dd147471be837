"""Packing prompts of different shapes into one padded batch of point-like tokens.

A prompt becomes the token sequence the official prompt encoder would build:
its points (labels 0/1), then either the two box corners (labels 2/3) or, when
it has points but no box, one "not a point" token (label -1). Sequences are
padded to a common length with extra tokens that ``token_mask`` marks False;
the decoder never attends to them, so each prompt's result equals what it
would get alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from promptseg.inputs import Prompt
from promptseg.modeling.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, NOT_A_POINT
from promptseg.utils.transforms import ResizeLongestSide


@dataclass
class PromptBatch:
    """P prompts as tensors in the resized (encoder input) frame.

    Attributes:
        coords: (P, T, 2) float32 token coordinates (x, y).
        labels: (P, T) int64 token labels in {-1, 0, 1, 2, 3}.
        token_mask: (P, T) bool, False for batch padding; None when no prompt is padded.
        mask_inputs: (P, 1, S, S) float32 mask logits (zeros where absent), or None if no prompt has one.
        has_mask: (P,) bool, which prompts carry a mask input; None if none does.
        masked_prompts: the indices of the prompts with a mask input, on the host (None when
            none does, or when whoever built the batch did not record them).
    """

    coords: torch.Tensor
    labels: torch.Tensor
    token_mask: Optional[torch.Tensor]
    mask_inputs: Optional[torch.Tensor]
    has_mask: Optional[torch.Tensor]
    masked_prompts: Optional[list[int]] = None


def prompt_tokens(prompt: Prompt, transform: ResizeLongestSide, original_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) coordinates in the resized frame and (T,) labels of one prompt's tokens."""
    coords: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    if prompt.point_coords is not None:
        coords.append(transform.apply_coords(prompt.point_coords, original_size))
        labels.append(prompt.point_labels)
    if prompt.box is not None:
        coords.append(transform.apply_boxes(prompt.box, original_size).reshape(2, 2))
        labels.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]))
    elif prompt.point_coords is not None:
        coords.append(np.zeros((1, 2)))
        labels.append(np.array([NOT_A_POINT]))
    if not coords:
        return np.zeros((0, 2)), np.zeros((0,), dtype=np.int64)
    return np.concatenate(coords), np.concatenate(labels).astype(np.int64)


def pack_prompts(
    prompts: Sequence[Prompt],
    original_sizes: Sequence[tuple[int, int]],
    transform: ResizeLongestSide,
    device: torch.device,
) -> PromptBatch:
    """Pack ``prompts`` (prompt i belongs to an image of ``original_sizes[i]``) into a :class:`PromptBatch`."""
    tokens = [prompt_tokens(p, transform, size) for p, size in zip(prompts, original_sizes)]
    lengths = [len(labels) for _, labels in tokens]
    longest = max(lengths, default=0)
    coords = np.zeros((len(prompts), longest, 2), dtype=np.float32)
    labels = np.full((len(prompts), longest), NOT_A_POINT, dtype=np.int64)
    token_mask = np.zeros((len(prompts), longest), dtype=bool)
    for index, (prompt_coords, prompt_labels) in enumerate(tokens):
        count = len(prompt_labels)
        coords[index, :count] = prompt_coords
        labels[index, :count] = prompt_labels
        token_mask[index, :count] = True
    mask_inputs = has_mask = None
    masked_prompts = [index for index, prompt in enumerate(prompts) if prompt.mask_input is not None]
    if masked_prompts:
        size = prompts[masked_prompts[0]].mask_input.shape[-1]
        stacked = np.zeros((len(prompts), 1, size, size), dtype=np.float32)
        for index in masked_prompts:
            stacked[index] = prompts[index].mask_input
        mask_inputs = host_to_device(stacked, device)
        has_mask = host_to_device(np.array([p.mask_input is not None for p in prompts]), device)
    return PromptBatch(
        coords=host_to_device(coords, device),
        labels=host_to_device(labels, device),
        token_mask=None if token_mask.all() else host_to_device(token_mask, device),
        mask_inputs=mask_inputs,
        has_mask=has_mask,
        masked_prompts=masked_prompts or None,
    )


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``; to a CUDA device through pinned memory, without blocking the host."""
    tensor = torch.from_numpy(array)
    if torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
