"""The one token rule: how a prompt becomes the point-like tokens the prompt encoder embeds.

SAM (``rule="sam"``): a prompt's tokens are its points (labels 0 background, 1 foreground),
then either the two corners of its box (labels 2 top-left, 3 bottom-right) or, when it has
points and no box, one "not a point" token (label -1, coordinates 0) that the official prompt
encoder appends. A prompt with neither points nor a box has no token.

SAM 2 (``rule="sam2"``): the box's two corners come first, then the points, then one "not a
point" token whenever there is a box or a point (the official SAM 2 predictor passes box corners
as points, and its prompt encoder pads every point prompt).

This module is the only place that states the rules; the predictors, batching, training, export
and ``PromptEncoder.forward`` call it. A decoder names the rule its model takes
(``Decoder.token_rule``).

:func:`token_sequence` states it for batches of tensors; :func:`prompt_tokens` gives one
prompt's tokens as numpy arrays by calling it on the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

if TYPE_CHECKING:
    from promptseg.prompts.frames import Frame
    from promptseg.prompts.validate import Prompt

NOT_A_POINT = -1
BACKGROUND = 0
FOREGROUND = 1
BOX_TOP_LEFT = 2
BOX_BOTTOM_RIGHT = 3
TOKEN_LABELS = (NOT_A_POINT, BACKGROUND, FOREGROUND, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT)
SAM_RULE = "sam"
SAM2_RULE = "sam2"
TOKEN_RULES = (SAM_RULE, SAM2_RULE)
"""The token rules: SAM's (box after the points, padding only without a box) and SAM 2's."""


def token_sequence(
    point_coords: Optional[torch.Tensor],
    point_labels: Optional[torch.Tensor],
    boxes: Optional[torch.Tensor],
    batch: Optional[int] = None,
    device: Optional[torch.device] = None,
    rule: str = SAM_RULE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens of B prompts of one shape, by ``rule`` (:data:`TOKEN_RULES`).

    Args:
        point_coords: (B, N, 2) (x, y) in the encoder's input frame, or None.
        point_labels: (B, N) labels, given exactly when ``point_coords`` is.
        boxes: (B, 4) XYXY boxes in the same frame (any shape whose rows hold 4 numbers), or None.
        batch: B when neither points nor boxes are given (default 1, as ``PromptEncoder``).
        device: the device of the result when neither points nor boxes are given.
        rule: ``"sam"`` or ``"sam2"`` (see the module docstring).
    Returns:
        (B, T, 2) coordinates in the dtype of the given coordinates (float32 without any) and
        (B, T) int64 labels. SAM: T = N + 2 with a box, N + 1 with points only; SAM 2: box corners
        first, T = N + 3 with a box, N + 1 with points only, 3 with a box only; 0 with neither.
    """
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    if rule not in TOKEN_RULES:
        raise ValueError(f"rule must be one of {list(TOKEN_RULES)}, got {rule!r}")
    given = point_coords if point_coords is not None else boxes
    if given is not None:
        batch, device, dtype = given.shape[0], given.device, given.dtype
    else:
        batch, dtype = 1 if batch is None else batch, torch.float32
    coords = [torch.zeros(batch, 0, 2, dtype=dtype, device=device)]
    labels = [torch.zeros(batch, 0, dtype=torch.long, device=device)]
    points = []
    if point_coords is not None:
        points = [(point_coords.to(dtype), point_labels.to(device=device, dtype=torch.long))]
    corners = []
    if boxes is not None:
        corner_labels = torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], device=device).expand(batch, 2)
        corners = [(boxes.reshape(batch, 2, 2).to(dtype), corner_labels)]
    if rule == SAM_RULE:
        parts, pad = points + corners, point_coords is not None and boxes is None
    else:
        parts, pad = corners + points, bool(points or corners)
    if pad:
        parts.append(
            (
                torch.zeros(batch, 1, 2, dtype=dtype, device=device),
                torch.full((batch, 1), NOT_A_POINT, dtype=torch.long, device=device),
            )
        )
    for part_coords, part_labels in parts:
        coords.append(part_coords)
        labels.append(part_labels)
    return torch.cat(coords, dim=1), torch.cat(labels, dim=1)


def prompt_tokens(
    prompt: "Prompt", transform: "Frame", original_size: tuple[int, ...], rule: str = SAM_RULE
) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) float64 coordinates in the resized frame and (T,) int64 labels of one validated prompt
    on an image of ``original_size`` (H, W), by token ``rule``; ``transform`` is the encoder's frame
    (:class:`~promptseg.prompts.frames.ResizeLongestSide` for SAM, ``SquareResize`` for SAM 2)."""
    coords = labels = box = None
    if prompt.point_coords is not None:
        coords = torch.from_numpy(transform.apply_coords(prompt.point_coords, original_size))[None]
        labels = torch.from_numpy(prompt.point_labels)[None]
    if prompt.box is not None:
        box = torch.from_numpy(transform.apply_boxes(prompt.box, original_size))
        if coords is not None:
            box = box.to(coords.dtype)
    token_coords, token_labels = token_sequence(coords, labels, box, rule=rule)
    return token_coords[0].double().numpy(), token_labels[0].numpy()
