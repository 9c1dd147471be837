"""SAM 2's prompt rules: the checks of ``SAM2ImagePredictor.predict``'s arguments, and its token rule.

A SAM 2 prompt may be one prompt (points (N, 2), labels (N,), a box (4,), a mask (1, S, S)) or
a batch of B prompts ((B, N, 2), (B, N), (B, 4), (B, 1, S, S)). Its tokens are the box's two
corners (labels 2, 3) first, then the points, then one "not a point" token (label -1) that the
prompt encoder appends whenever there is a box or a point; a mask-only prompt has no token. (SAM 1
puts the box after the points and pads only point prompts without a box:
:mod:`promptseg.prompts.tokens`.)
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from promptseg.prompts.tokens import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, TOKEN_LABELS
from promptseg.prompts.validate import finite_numbers

__all__ = ["check_sam2_prompt", "prompt_batch_size", "sam2_point_inputs"]


def check_sam2_prompt(
    point_coords: Any = None,
    point_labels: Any = None,
    box: Any = None,
    mask_input: Any = None,
    mask_size: int = 256,
) -> None:
    """Check the prompt arguments of ``SAM2ImagePredictor.predict`` (nothing is converted or changed).

    Raises:
        TypeError: an argument that is not an array of numbers.
        ValueError: a shape, label or value that SAM 2 cannot take; the message names it.
    """
    batches = {}
    if point_coords is not None or point_labels is not None:
        if point_coords is None:
            raise ValueError("point_labels was given without point_coords")
        if point_labels is None:
            raise ValueError("point_coords was given without point_labels; pass one label (0 or 1) per point")
        coords = finite_numbers("point_coords", point_coords)
        if coords.ndim not in (2, 3) or coords.shape[-1] != 2 or coords.shape[-2] == 0:
            raise ValueError(f"point_coords must have shape (N, 2) or (B, N, 2) with N >= 1, got {coords.shape}")
        labels = finite_numbers("point_labels", point_labels)
        if labels.shape != coords.shape[:-1]:
            raise ValueError(
                f"point_labels must have shape {coords.shape[:-1]} to match point_coords, got {labels.shape}"
            )
        if not np.isin(labels, TOKEN_LABELS).all():
            raise ValueError(
                f"point_labels must be 1 (foreground) or 0 (background) (or {list(TOKEN_LABELS)} for "
                f"padding and box corners), got {np.unique(labels).tolist()}"
            )
        batches["point_coords"] = coords.shape[0] if coords.ndim == 3 else 1
    if box is not None:
        boxes = finite_numbers("box", box)
        if boxes.ndim not in (1, 2) or boxes.shape[-1] != 4 or boxes.size == 0:
            raise ValueError(f"box must have shape (4,) or (B, 4) (XYXY), got {boxes.shape}")
        boxes = boxes.reshape(-1, 4)
        if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
            raise ValueError(f"box must satisfy x0 <= x1 and y0 <= y1 (XYXY), got {boxes.tolist()}")
        batches["box"] = len(boxes)
    if mask_input is not None:
        mask = finite_numbers("mask_input", mask_input)
        if mask.shape[-3:] != (1, mask_size, mask_size) or mask.ndim not in (3, 4):
            raise ValueError(
                f"mask_input must have shape (1, {mask_size}, {mask_size}) or (B, 1, {mask_size}, {mask_size}) "
                f"(low-res logits from a previous prediction), got {mask.shape}"
            )
        if mask.ndim == 4 and (mask.shape[0] > 1 or not batches):
            batches["mask_input"] = mask.shape[0]
    if len(set(batches.values())) > 1:
        raise ValueError(f"the prompt arguments hold different numbers of prompts: {batches}")


def prompt_batch_size(
    point_coords: Optional[torch.Tensor], boxes: Optional[torch.Tensor], mask_input: Optional[torch.Tensor]
) -> int:
    """B of a prompt batch: (B, N, 2) points, (B, 2, 2) box corners, (B, 1, S, S) masks (1 without any)."""
    for given in (point_coords, boxes, mask_input):
        if given is not None:
            return given.shape[0]
    return 1


def sam2_point_inputs(
    point_coords: Optional[torch.Tensor], point_labels: Optional[torch.Tensor], boxes: Optional[torch.Tensor]
) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The points the SAM 2 prompt encoder gets (it appends the "not a point" token itself).

    Args:
        point_coords: (B, N, 2) in the encoder's frame, point_labels (B, N); or None.
        boxes: (B, 2, 2) corners in the encoder's frame, or None.
    Returns:
        ((B, 2 + N, 2) coords, (B, 2 + N) int32 labels), the box corners first; (B, N, 2) and (B, N)
        without a box; None with neither.
    """
    if boxes is None:
        return None if point_coords is None else (point_coords, point_labels)
    corners = boxes.reshape(-1, 2, 2)
    corner_labels = torch.tensor([[BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]], dtype=torch.int, device=boxes.device)
    corner_labels = corner_labels.repeat(corners.shape[0], 1)
    if point_coords is None:
        return corners, corner_labels
    return torch.cat([corners, point_coords], dim=1), torch.cat([corner_labels, point_labels], dim=1)


