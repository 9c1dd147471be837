"""Packing prompts of different shapes into one padded batch of point-like tokens.

Each prompt becomes its tokens by the one token rule (:mod:`promptseg.prompts.tokens`; SAM's or
SAM 2's, as the decoder says: ``Decoder.token_rule``).
Sequences are padded to a common length with extra tokens that ``token_mask`` marks False;
the decoder never attends to them, so each prompt's result equals what it
would get alone. Text prompts add embedded tokens (``extra_tokens``, from a text prompt
encoder) after the point-like tokens; prompts without text get masked zeros in those places.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from promptseg.prompts.frames import Frame
from promptseg.prompts.tokens import NOT_A_POINT, SAM_RULE, prompt_tokens, token_sequence
from promptseg.prompts.validate import Prompt


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
        extra_tokens: (P, K, C) embedded sparse tokens that follow the T point-like tokens (a text
            prompt's tokens), in the model dtype, or None when no prompt has any. When given,
            ``token_mask`` (if not None) is (P, T + K). ``Sam.embed_prompt_tokens`` appends them
            to the embedded point-like tokens.
    """

    coords: torch.Tensor
    labels: torch.Tensor
    token_mask: Optional[torch.Tensor]
    mask_inputs: Optional[torch.Tensor]
    has_mask: Optional[torch.Tensor]
    masked_prompts: Optional[list[int]] = None
    extra_tokens: Optional[torch.Tensor] = None


def pack_prompts(
    prompts: Sequence[Prompt],
    original_sizes: Sequence[tuple[int, int]],
    transform: Frame,
    device: torch.device,
    extra_tokens: Optional[Sequence[Optional[torch.Tensor]]] = None,
    token_rule: str = SAM_RULE,
) -> PromptBatch:
    """Pack ``prompts`` (prompt i belongs to an image of ``original_sizes[i]``) into a :class:`PromptBatch`.

    Args:
        transform: the encoder's frame (``ImageEncoder.frame``).
        token_rule: ``"sam"`` or ``"sam2"`` (the decoder's ``token_rule``).
        extra_tokens: per prompt, its (K, C) embedded text tokens on ``device``, or None for a
            prompt without text; all given ones have the same shape.
    """
    tokens = [prompt_tokens(p, transform, size, token_rule) for p, size in zip(prompts, original_sizes)]
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
    extra = None
    if extra_tokens is not None and any(tokens is not None for tokens in extra_tokens):
        extra, extra_mask = _stack_extra(extra_tokens)
        token_mask = np.concatenate([token_mask, extra_mask], axis=1)
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
        extra_tokens=extra,
    )


def _stack_extra(extra_tokens: Sequence[Optional[torch.Tensor]]) -> tuple[torch.Tensor, np.ndarray]:
    """(P, K, C) tokens (zeros for prompts without) and their (P, K) bool mask on the host."""
    given = [tokens for tokens in extra_tokens if tokens is not None]
    shape = given[0].shape
    if any(tokens.shape != shape for tokens in given):
        raise ValueError(f"extra tokens of one batch must share a shape, got {sorted({tuple(t.shape) for t in given})}")
    zeros = given[0].new_zeros(shape)
    stacked = torch.stack([zeros if tokens is None else tokens for tokens in extra_tokens])
    mask = np.array([[tokens is not None] * shape[0] for tokens in extra_tokens], dtype=bool)
    return stacked, mask


def tensor_prompt_batch(
    point_coords: Optional[torch.Tensor],
    point_labels: Optional[torch.Tensor],
    boxes: Optional[torch.Tensor],
    mask_input: Optional[torch.Tensor],
    token_rule: str = SAM_RULE,
) -> PromptBatch:
    """B prompts of one shape, given as ``SamPredictor.predict_torch`` takes them, as a PromptBatch.

    Args:
        point_coords: (B, N, 2) in the resized frame, and point_labels (B, N), or None.
        boxes: (B, 4) XYXY in the resized frame, or None.
        mask_input: (B, 1, S, S) low-res logits, or None.
    The tokens follow the token rule ``token_rule``; B = 1 when no prompt is given at all, as in
    ``PromptEncoder``. A (1, 1, S, S) mask input goes with every prompt. No prompt is padded.
    """
    batch = mask_input.shape[0] if mask_input is not None else None
    device = mask_input.device if mask_input is not None else None
    coords, labels = token_sequence(point_coords, point_labels, boxes, batch, device, rule=token_rule)
    has_mask = None
    if mask_input is not None:
        if mask_input.shape[0] == 1 and len(labels) > 1:
            mask_input = mask_input.expand(len(labels), -1, -1, -1)
        has_mask = torch.ones(len(labels), dtype=torch.bool, device=labels.device)
    return PromptBatch(
        coords=coords.float(),
        labels=labels,
        token_mask=None,
        mask_inputs=mask_input.float() if mask_input is not None else None,
        has_mask=has_mask,
        masked_prompts=list(range(len(labels))) if mask_input is not None else None,
    )


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``; to a CUDA device through pinned memory, without blocking the host."""
    tensor = torch.from_numpy(array)
    if torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
