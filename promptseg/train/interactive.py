"""One simulated interactive session per object: the first prompt, then corrective rounds,
each fed the previous low-res logits, with SAM's loss at every round. The first prompt may
include text tokens (:class:`TextFirstPrompt`, from ``promptseg train --text``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from promptseg.masks import random_points
from promptseg.modeling import Sam
from promptseg.train.losses import promptable_loss
from promptseg.train.prompts import PromptState, add_corrective_clicks, first_prompts


@dataclass
class SessionResult:
    """Loss averaged over rounds, and the IoU of the first and last rounds' chosen masks (P,)."""

    loss: torch.Tensor
    first_iou: torch.Tensor
    last_iou: torch.Tensor


@dataclass
class TextFirstPrompt:
    """Text tokens in the prompts of some objects, from the first round on.

    Attributes:
        tokens: (P, K, C) sparse tokens (rows of objects in ``used`` only matter).
        used: (P,) bool, the object's prompts include its text tokens; its first prompt is the
            text (the single-mask output is trained), never a box.
        click: (P,) bool, a text object's first click is shown with the text (else the text alone).
        click_regions: (P, H, W) bool where the first click of a text object is drawn from
            (e.g. a whole's part, so that the text decides the level), or None for its mask.
        alone_multimask: a text-only first prompt trains the 3 ambiguity outputs (the lowest loss
            one, as for a single click) instead of the single-mask output.
    """

    tokens: torch.Tensor
    used: torch.Tensor
    click: torch.Tensor
    click_regions: Optional[torch.Tensor] = None
    alone_multimask: bool = False

    def with_first_click(self, state: PromptState, generator: torch.Generator) -> PromptState:
        """``state`` with text objects point-first, their first click drawn from ``click_regions``."""
        points = state.points
        if self.click_regions is not None:
            points = points.clone()
            points[:, 0] = torch.where(self.used[:, None], random_points(self.click_regions, generator), points[:, 0])
        return PromptState(state.is_box & ~self.used, state.boxes, points, state.labels)

    def token_mask(self, labels: torch.Tensor, first_round: bool) -> torch.Tensor:
        """(P, T + K) bool, which of the point-like tokens ``labels`` (P, T) and the text tokens a
        round shows: a text-only first prompt hides its first click (and, in the first round,
        the "not a point" token after it); objects without text hide their text tokens."""
        shown = torch.ones_like(labels, dtype=torch.bool)
        hidden = self.used & ~self.click
        shown[:, 0] &= ~hidden
        if first_round:
            shown[:, -1] &= ~hidden
        text_shown = self.used[:, None].expand(-1, self.tokens.shape[1])
        return torch.cat([shown, text_shown], dim=1)


def round_schedule(rounds: int, silent_rounds: int, generator: torch.Generator) -> list[bool]:
    """For each round after the first: True if it adds a click, False for a silent round.
    One silent round goes to a random position among the click rounds, a second one at the end."""
    schedule = [True] * rounds
    if silent_rounds >= 1:
        schedule.insert(int(torch.randint(0, rounds + 1, (1,), generator=generator)), False)
    if silent_rounds == 2:
        schedule.append(False)
    return schedule


def run_session(
    model: Sam,
    embeddings: torch.Tensor,
    image_index: torch.Tensor,
    targets: torch.Tensor,
    schedule: list[bool],
    box_probability: float,
    generator: torch.Generator,
    text: Optional[TextFirstPrompt] = None,
) -> SessionResult:
    """Simulate the rounds for P objects and return their loss.

    Args:
        embeddings: (B, C, h, w) image embeddings.
        image_index: (P,) image of each object.
        targets: (P, S, S) bool ground truth in the padded input frame.
        schedule: see :func:`round_schedule`.
        text: text tokens in the prompts of some objects, or None.
    Returns:
        The loss, and IoUs measured on the low-res grid.
    """
    prompt_encoder, decoder = model.prompt_encoder, model.mask_decoder
    count, side = targets.shape[0], targets.shape[-1]
    rows = torch.arange(count, device=targets.device)
    # The loss compares the low-res logits with the ground truth averaged down to their grid.
    factor = side // prompt_encoder.mask_input_size[0]
    low_res_targets = F.avg_pool2d(targets[:, None].float(), factor)[:, 0] >= 0.5
    state = first_prompts(targets, box_probability, generator)
    if text is not None:
        state = text.with_first_click(state, generator)
    # Round 0: a single click is ambiguous (3 masks, the best one trained); a box uses the single output.
    candidates = torch.zeros(count, decoder.num_mask_tokens, dtype=torch.bool, device=targets.device)
    candidates[:, 1:] = ~state.is_box[:, None]
    candidates[:, 0] = state.is_box
    if text is not None:  # text with a click names one object: the single-mask output
        candidates[text.used] = False
        candidates[text.used, 0] = True
        if text.alone_multimask:  # text alone may fit several objects: the 3 ambiguity outputs
            alone = text.used & ~text.click
            candidates[alone, 0] = False
            candidates[alone, 1:] = True
    previous_logits = None
    losses, ious = [], []
    for round_index in range(len(schedule) + 1):
        coords, labels = state.tokens()
        token_mask = None if text is None else text.token_mask(labels, first_round=round_index == 0)
        low_res, iou_predictions = model.decode_tokens(
            embeddings,
            coords,
            labels,
            prompt_encoder.dense_embeddings(count, previous_logits),
            image_index=image_index,
            extra_tokens=None if text is None else text.tokens,
            token_padding_mask=token_mask,
        )
        terms = promptable_loss(low_res.float(), iou_predictions, low_res_targets, candidates)
        losses.append(terms.total)
        # The next round sees the mask a user would: the candidate with the highest predicted IoU.
        shown = iou_predictions.detach().float().masked_fill(~candidates, float("-inf")).argmax(dim=1)
        ious.append(terms.true_iou[rows, shown])
        previous_logits = low_res[rows, shown][:, None].detach()
        # Later rounds have several prompts, which are not ambiguous: the single-mask output.
        candidates = torch.zeros_like(candidates)
        candidates[:, 0] = True
        if round_index < len(schedule) and schedule[round_index]:
            upsampled = F.interpolate(previous_logits.float(), size=(side, side), mode="bilinear", align_corners=False)
            state = add_corrective_clicks(state, upsampled[:, 0] > 0, targets, generator)
    return SessionResult(torch.stack(losses).mean(), ious[0], ious[-1])
