"""``TextPromptEncoder``: a concept embedding becomes sparse prompt tokens for SAM's mask decoder.

SAM's paper prompts the mask decoder with a CLIP embedding projected to the prompt width. Here a
small MLP maps one L2-normalised concept embedding (N, D) to ``num_tokens`` tokens (N, k, C) of
the prompt encoder's width C; they follow the point and box tokens of the same prompt. The module
lives outside the official ``Sam`` module tree, so official checkpoints still load into ``Sam``
with ``strict=True``; promptseg checkpoints store its weights under ``text_prompt_encoder.``
(see :mod:`promptseg.text.checkpoint`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TextPromptEncoder(nn.Module):
    """An MLP from a D-dimensional concept embedding to k sparse tokens of width C.

    Args:
        concept_dim: D, the concept encoder's embedding size.
        embed_dim: C, the prompt width of the SAM model (``prompt_encoder.embed_dim``).
        num_tokens: k tokens per text prompt.
        hidden_dim: width of the MLP's hidden layers.
    """

    def __init__(self, concept_dim: int, embed_dim: int, num_tokens: int = 4, hidden_dim: int = 256) -> None:
        super().__init__()
        for name, value in (("concept_dim", concept_dim), ("embed_dim", embed_dim), ("num_tokens", num_tokens), ("hidden_dim", hidden_dim)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.concept_dim, self.embed_dim = int(concept_dim), int(embed_dim)
        self.num_tokens, self.hidden_dim = int(num_tokens), int(hidden_dim)
        self.mlp = nn.Sequential(
            nn.Linear(self.concept_dim, self.hidden_dim),
            nn.GELU(),
            nn.Linear(self.hidden_dim, self.hidden_dim),
            nn.GELU(),
            nn.Linear(self.hidden_dim, self.num_tokens * self.embed_dim),
        )
        self.token_embed = nn.Parameter(torch.zeros(self.num_tokens, self.embed_dim))
        """(k, C) a learned embedding per token slot, added to the MLP's output."""

    def config(self) -> dict[str, int]:
        """The constructor arguments (stored with the weights)."""
        return {
            "concept_dim": self.concept_dim,
            "embed_dim": self.embed_dim,
            "num_tokens": self.num_tokens,
            "hidden_dim": self.hidden_dim,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TextPromptEncoder":
        """A module built with ``config`` (as returned by :meth:`config`; values may be strings)."""
        return cls(**{key: int(config[key]) for key in ("concept_dim", "embed_dim", "num_tokens", "hidden_dim")})

    def forward(self, concept_embeddings: torch.Tensor) -> torch.Tensor:
        """(N, D) concept embeddings -> (N, k, C) sparse prompt tokens in this module's dtype."""
        if concept_embeddings.dim() != 2 or concept_embeddings.shape[1] != self.concept_dim:
            raise ValueError(
                f"concept embeddings must have shape (N, {self.concept_dim}), got {tuple(concept_embeddings.shape)}"
            )
        weight = self.token_embed
        tokens = self.mlp(concept_embeddings.to(device=weight.device, dtype=weight.dtype))
        return tokens.reshape(-1, self.num_tokens, self.embed_dim) + weight
