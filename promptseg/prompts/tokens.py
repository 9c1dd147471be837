"""The one token rule: how a prompt becomes the point-like tokens the prompt encoder embeds.

A prompt's tokens are its points (labels 0 background, 1 foreground), then either the two
corners of its box (labels 2 top-left, 3 bottom-right) or, when it has points and no box, one
"not a point" token (label -1, coordinates 0) that the official prompt encoder appends. A
prompt with neither points nor a box has no token. This module is the only place that states
the rule; the predictor, batching, training, export and ``PromptEncoder.forward`` call it.

:func:`token_sequence` states it for batches of tensors; :func:`prompt_tokens` gives one
prompt's tokens as numpy arrays by calling it on the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from promptseg.prompts.frames import ResizeLongestSide

if TYPE_CHECKING:
    from promptseg.prompts.validate import Prompt

NOT_A_POINT = -1
BACKGROUND = 0
FOREGROUND = 1
BOX_TOP_LEFT = 2
BOX_BOTTOM_RIGHT = 3
TOKEN_LABELS = (NOT_A_POINT, BACKGROUND, FOREGROUND, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT)


def token_sequence(
    point_coords: Optional[torch.Tensor],
    point_labels: Optional[torch.Tensor],
    boxes: Optional[torch.Tensor],
    batch: Optional[int] = None,
    device: Optional[torch.device] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens of B prompts of one shape.

    Args:
        point_coords: (B, N, 2) (x, y) in the encoder's input frame, or None.
        point_labels: (B, N) labels, given exactly when ``point_coords`` is.
        boxes: (B, 4) XYXY boxes in the same frame (any shape whose rows hold 4 numbers), or None.
        batch: B when neither points nor boxes are given (default 1, as ``PromptEncoder``).
        device: the device of the result when neither points nor boxes are given.
    Returns:
        (B, T, 2) coordinates in the dtype of the given coordinates (float32 without any) and
        (B, T) int64 labels, T = N + 2 with a box, N + 1 with points only, 0 with neither.
    """
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    given = point_coords if point_coords is not None else boxes
    if given is not None:
        batch, device, dtype = given.shape[0], given.device, given.dtype
    else:
        batch, dtype = 1 if batch is None else batch, torch.float32
    coords = [torch.zeros(batch, 0, 2, dtype=dtype, device=device)]
    labels = [torch.zeros(batch, 0, dtype=torch.long, device=device)]
    if point_coords is not None:
        coords.append(point_coords.to(dtype))
        labels.append(point_labels.to(device=device, dtype=torch.long))
    if boxes is not None:
        coords.append(boxes.reshape(batch, 2, 2).to(dtype))
        labels.append(torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], device=device).expand(batch, 2))
    elif point_coords is not None:
        coords.append(torch.zeros(batch, 1, 2, dtype=dtype, device=device))
        labels.append(torch.full((batch, 1), NOT_A_POINT, dtype=torch.long, device=device))
    return torch.cat(coords, dim=1), torch.cat(labels, dim=1)


def prompt_tokens(
    prompt: "Prompt", transform: ResizeLongestSide, original_size: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) float64 coordinates in the resized frame and (T,) int64 labels of one validated prompt
    on an image of ``original_size`` (H, W)."""
    coords = labels = box = None
    if prompt.point_coords is not None:
        coords = torch.from_numpy(transform.apply_coords(prompt.point_coords, original_size))[None]
        labels = torch.from_numpy(prompt.point_labels)[None]
    if prompt.box is not None:
        box = torch.from_numpy(transform.apply_boxes(prompt.box, original_size))
        if coords is not None:
            box = box.to(coords.dtype)
    token_coords, token_labels = token_sequence(coords, labels, box)
    return token_coords[0].double().numpy(), token_labels[0].numpy()
