"""Run-length encoding of many binary masks at once, in the COCO layout, computed on the masks' device.

The format (its types, alphabet, checks, and the one-mask numpy codec) is :mod:`promptseg.io.rle`;
this module is its batched torch form, for the mask generator's thousands of masks per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from promptseg.io.rle import (
    BITS_PER_CHAR,
    CHAR_OFFSET,
    CONTINUE_BIT,
    SIGN_BIT,
    VALUE_BITS,
    CocoRle,
    UncompressedRle,
)


@dataclass
class RunLengths:
    """The run-length encodings of M masks of one size, held as flat tensors.

    Attributes:
        counts: (K,) int64, the counts of every mask one after the other.
        lengths: (M,) int64, how many of ``counts`` belong to each mask.
        size: (H, W) of the masks.
    """

    counts: torch.Tensor
    lengths: torch.Tensor
    size: tuple[int, int]

    def to_uncompressed(self) -> list[UncompressedRle]:
        """The M encodings as ``{"size": [H, W], "counts": [int, ...]}`` (one host transfer)."""
        counts = self.counts.tolist()
        bounds = np.cumsum([0] + self.lengths.tolist()).tolist()
        return [{"size": list(self.size), "counts": counts[a:b]} for a, b in zip(bounds[:-1], bounds[1:])]

    def to_coco(self) -> list[CocoRle]:
        """The M encodings as pycocotools' compressed ``{"size": [H, W], "counts": str}``, built on the device."""
        characters, string_lengths = _compress(self.counts, self.lengths, self.size)
        text = characters.cpu().numpy().tobytes().decode("ascii")
        bounds = np.cumsum([0] + string_lengths.tolist()).tolist()
        return [{"size": list(self.size), "counts": text[a:b]} for a, b in zip(bounds[:-1], bounds[1:])]


def encode_rle(masks: torch.Tensor) -> RunLengths:
    """Run-length encode (M, H, W) bool masks on their device.

    A mask stored transposed (a (M, H, W) view of a contiguous (M, W, H)
    tensor) is read without a copy.
    """
    count, height, width = masks.shape
    pixels = height * width
    column_major = masks.transpose(1, 2).reshape(count, pixels)
    # A run starts where a pixel differs from the one before it (pixel -1 counts as unset).
    run_starts = torch.empty_like(column_major)
    run_starts[:, 0] = column_major[:, 0]
    torch.ne(column_major[:, 1:], column_major[:, :-1], out=run_starts[:, 1:])
    mask_index, position = run_starts.nonzero(as_tuple=True)
    starts_per_mask = torch.bincount(mask_index, minlength=count)
    last_of_mask = torch.cumsum(starts_per_mask, 0)
    first_of_mask = last_of_mask - starts_per_mask
    # Each run-start closes the run before it: its length is the distance to the previous start (or to 0).
    previous = torch.zeros_like(position)
    previous[1:] = position[:-1]
    is_first = torch.arange(len(position), device=position.device) == first_of_mask[mask_index]
    closed_runs = position - previous.masked_fill(is_first, 0)
    # The last run of each mask ends at the last pixel.
    padded_position = torch.cat([position.new_zeros(1), position])
    final_runs = pixels - torch.where(starts_per_mask > 0, padded_position[last_of_mask], 0)
    # Layout per mask: its closed runs, then its final run.
    counts = torch.empty(len(position) + count, dtype=torch.long, device=masks.device)
    counts[torch.arange(len(position), device=masks.device) + mask_index] = closed_runs
    counts[last_of_mask + torch.arange(count, device=masks.device)] = final_runs
    return RunLengths(counts=counts, lengths=starts_per_mask + 1, size=(height, width))


def _compress(counts: torch.Tensor, lengths: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """pycocotools' string form of run lengths: (C,) uint8 ASCII of all masks and (M,) characters per mask."""
    device = counts.device
    mask_of_count = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths)
    first_of_mask = torch.cumsum(lengths, 0) - lengths
    index_in_mask = torch.arange(len(counts), device=device) - first_of_mask[mask_of_count]
    values = counts.clone()
    delta_coded = index_in_mask > 2
    values[2:] -= torch.where(delta_coded[2:], counts[:-2], 0)
    # Enough 5-bit groups for any value in [-H*W, H*W] and its sign bit.
    value_bits = (size[0] * size[1]).bit_length() + 1
    groups = (value_bits + BITS_PER_CHAR - 1) // BITS_PER_CHAR
    shifts = BITS_PER_CHAR * torch.arange(groups, device=device)
    chunks = (values[:, None] >> shifts) & VALUE_BITS
    rest = values[:, None] >> (shifts + BITS_PER_CHAR)
    more = torch.where((chunks & SIGN_BIT) != 0, rest != -1, rest != 0)
    chars_per_count = torch.cumprod(more.long(), dim=1).sum(dim=1) + 1
    used = torch.arange(groups, device=device)[None] < chars_per_count[:, None]
    continued = torch.arange(groups, device=device)[None] < (chars_per_count[:, None] - 1)
    characters = (chunks | torch.where(continued, CONTINUE_BIT, 0)) + CHAR_OFFSET
    string_lengths = torch.zeros(len(lengths), dtype=torch.long, device=device)
    string_lengths.index_add_(0, mask_of_count, chars_per_count)
    return characters[used].to(torch.uint8), string_lengths


def uncompressed_rles(masks: torch.Tensor) -> list[UncompressedRle]:
    """(M, H, W) bool masks -> M uncompressed RLEs ``{"size": [H, W], "counts": [...]}`` (one host transfer)."""
    return encode_rle(masks).to_uncompressed()
