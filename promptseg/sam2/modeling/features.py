"""The features of B images for SAM 2's decoder: the image embedding and the higher-resolution
levels its upscaling adds (what ``SAM2Base.encode_image`` returns, as one object that the seams pass
around; ``promptseg.encoders.features`` has the helpers that take SAM's tensors too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch


@dataclass(frozen=True)
class MultiScaleFeatures:
    """Features of B images for a decoder that also reads high-resolution levels (SAM 2).

    Attributes:
        embedding: (B, C, H, W) image embeddings (SAM 2: with ``no_mem_embed`` added).
        high_res: the higher-resolution levels, e.g. SAM 2's ((B, C/8, 4H, 4W), (B, C/4, 2H, 2W)),
            already projected by the decoder's ``conv_s0`` / ``conv_s1``; empty when the model has none.

    ``shape``, ``dtype``, ``device``, ``is_cuda`` and ``len()`` are the embedding's, so code that asks
    a features object only those questions takes either kind.
    """

    embedding: torch.Tensor
    high_res: tuple[torch.Tensor, ...] = ()

    def __post_init__(self) -> None:
        rows = self.embedding.shape[0]
        for level in self.high_res:
            if level.shape[0] != rows:
                raise ValueError(
                    f"every feature level needs the embedding's {rows} rows, got a level of shape {tuple(level.shape)}"
                )

    @property
    def shape(self) -> torch.Size:
        return self.embedding.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.embedding.dtype

    @property
    def device(self) -> torch.device:
        return self.embedding.device

    @property
    def is_cuda(self) -> bool:
        return self.embedding.is_cuda

    def __len__(self) -> int:
        return self.embedding.shape[0]

    def rows(self, index: Union[torch.Tensor, slice, int]) -> "MultiScaleFeatures":
        """The features of the images at ``index`` (an int keeps its row as a batch of one)."""
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return MultiScaleFeatures(self.embedding[index], tuple(level[index] for level in self.high_res))

    @staticmethod
    def cat(parts: Sequence["MultiScaleFeatures"]) -> "MultiScaleFeatures":
        """The features of every image of ``parts``, in order."""
        levels = len(parts[0].high_res)
        return MultiScaleFeatures(
            torch.cat([part.embedding for part in parts]),
            tuple(torch.cat([part.high_res[level] for part in parts]) for level in range(levels)),
        )
