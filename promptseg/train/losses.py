"""Losses of the promptable segmentation task: focal + dice on masks (20:1), the minimum over
ambiguous outputs, and MSE on the IoU head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from promptseg.masks import mask_iou


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels.

    ``FL = -a_t (1 - p_t)^gamma log(p_t)`` with ``p_t = p`` and ``a_t = alpha`` on
    foreground pixels, ``p_t = 1 - p`` and ``a_t = 1 - alpha`` on background.

    Args:
        logits: (..., H, W) mask logits.
        targets: (..., H, W) in {0, 1} (bool or float), broadcastable to ``logits``.
    Returns:
        (...) mean loss per mask.
    """
    targets = targets.to(logits.dtype)
    probs = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets.expand_as(logits), reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * cross_entropy).flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` with ``p = sigmoid(logits)``.

    Args:
        logits: (..., H, W); targets: (..., H, W) in {0, 1}, broadcastable.
    Returns:
        (...) loss per mask.
    """
    probs = torch.sigmoid(logits).flatten(-2)
    targets = targets.to(logits.dtype).expand_as(logits).flatten(-2)
    return 1 - (2 * (probs * targets).sum(-1) + smooth) / (probs.sum(-1) + targets.sum(-1) + smooth)


@dataclass
class LossTerms:
    """One round's loss and what it selected.

    Attributes:
        total: scalar, mean over prompts of the selected mask loss plus the IoU loss.
        selected: (P,) index of the mask each prompt back-propagates.
        true_iou: (P, M) IoU of each thresholded mask with its target.
    """

    total: torch.Tensor
    selected: torch.Tensor
    true_iou: torch.Tensor


def promptable_loss(
    logits: torch.Tensor,
    iou_predictions: torch.Tensor,
    targets: torch.Tensor,
    candidates: torch.Tensor | None = None,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    iou_weight: float = 1.0,
) -> LossTerms:
    """SAM's training loss for one round.

    Args:
        logits: (P, M, H, W) mask logits.
        iou_predictions: (P, M) IoU head outputs.
        targets: (P, H, W) bool ground truth.
        candidates: (P, M) bool, the outputs each prompt may use (e.g. the 3 ambiguity
            masks for a single click, the single-mask output otherwise); None allows all.
    Returns:
        The mask loss ``focal_weight * focal + dice_weight * dice`` of the lowest-loss
        candidate (only it is back-propagated), plus ``iou_weight`` x the MSE between
        the predicted and true IoU of every candidate, averaged over prompts.
    """
    if candidates is None:
        candidates = torch.ones(iou_predictions.shape, dtype=torch.bool, device=logits.device)
    targets = targets[:, None]
    mask_losses = focal_weight * focal_loss(logits, targets) + dice_weight * dice_loss(logits, targets)
    selected = mask_losses.float().masked_fill(~candidates, float("inf")).argmin(dim=1)
    chosen = mask_losses.gather(1, selected[:, None])[:, 0]
    true_iou = mask_iou(logits > 0, targets)
    squared = (iou_predictions.float() - true_iou) ** 2
    iou_loss = (squared * candidates).sum(1) / candidates.sum(1)
    return LossTerms((chosen + iou_weight * iou_loss).mean(), selected, true_iou)
