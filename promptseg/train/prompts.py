"""Prompt simulation for training: a first prompt per object, then corrective clicks.

All coordinates are (x, y) pixels of the model's input frame (the resized,
padded image), the frame the prompt encoder expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptseg.masks import mask_boxes_xyxy, random_points
from promptseg.prompts.tokens import token_sequence


@dataclass
class PromptState:
    """The prompts of P objects after some rounds.

    Attributes:
        is_box: (P,) bool, the first prompt was a box (else a point).
        boxes: (P, 4) float XYXY noisy boxes (meaningful where is_box).
        points: (P, N, 2) float clicks so far (the first point, then corrective clicks).
        labels: (P, N) int64 labels of the clicks, 1 foreground and 0 background. For
            box-first objects column 0 is a placeholder that is never shown to the model.
    """

    is_box: torch.Tensor
    boxes: torch.Tensor
    points: torch.Tensor
    labels: torch.Tensor

    def tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, T, 2) coords and (P, T) labels by the one token rule (:mod:`promptseg.prompts.tokens`).

        Point-first objects: their clicks, then one "not a point" token. Box-first
        objects: their corrective clicks, then the two box corners. Both have
        T = N + 1 tokens, so a batch never needs padding.
        """
        point_first_coords, point_first_labels = token_sequence(self.points, self.labels, None)
        box_first_coords, box_first_labels = token_sequence(self.points[:, 1:], self.labels[:, 1:], self.boxes)
        select = self.is_box[:, None]
        coords = torch.where(select[..., None], box_first_coords, point_first_coords)
        labels = torch.where(select, box_first_labels, point_first_labels)
        return coords, labels


def jittered_boxes(masks: torch.Tensor, generator: torch.Generator, noise_ratio: float = 0.1, max_noise: float = 20.0) -> torch.Tensor:
    """(P, H, W) bool -> (P, 4) XYXY tight boxes with each coordinate moved by Gaussian noise of
    std ``noise_ratio`` x the box side along its axis, clipped to +-``max_noise`` px, kept in the image."""
    boxes = mask_boxes_xyxy(masks).float()
    sides = (boxes[:, 2:] - boxes[:, :2] + 1).repeat(1, 2)
    noise = torch.randn(boxes.shape, generator=generator, device=boxes.device) * noise_ratio * sides
    boxes = boxes + noise.clamp(-max_noise, max_noise)
    height, width = masks.shape[-2:]
    limits = torch.tensor([width - 1, height - 1, width - 1, height - 1], device=boxes.device, dtype=boxes.dtype)
    boxes = torch.minimum(boxes.clamp_min(0), limits)
    low, high = torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])
    return torch.cat([low, high], dim=1)


def first_prompts(targets: torch.Tensor, box_probability: float, generator: torch.Generator) -> PromptState:
    """A uniformly drawn foreground point, or (with ``box_probability``) a jittered box, per object.

    Args:
        targets: (P, H, W) bool ground-truth masks.
    """
    count = targets.shape[0]
    is_box = torch.rand(count, generator=generator, device=targets.device) < box_probability
    points = random_points(targets, generator)[:, None]
    labels = torch.ones(count, 1, dtype=torch.long, device=targets.device)
    return PromptState(is_box, jittered_boxes(targets, generator), points, labels)


def add_corrective_clicks(state: PromptState, predictions: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> PromptState:
    """Append one click per object, drawn uniformly from the error region of its prediction:
    foreground (1) on a false negative, background (0) on a false positive. An object
    without errors gets a foreground click inside its mask.

    Args:
        predictions, targets: (P, H, W) bool.
    """
    errors = predictions ^ targets
    perfect = ~errors.flatten(1).any(1)
    errors[perfect] = targets[perfect]
    clicks = random_points(errors, generator)
    x, y = clicks[:, 0].long(), clicks[:, 1].long()
    labels = targets[torch.arange(len(targets), device=targets.device), y, x].long()
    return PromptState(
        state.is_box,
        state.boxes,
        torch.cat([state.points, clicks[:, None]], dim=1),
        torch.cat([state.labels, labels[:, None]], dim=1),
    )
