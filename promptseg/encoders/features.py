"""What an image encoder hands the decoder: one embedding tensor (SAM), or an embedding plus the
higher-resolution levels SAM 2's decoder adds in its upscaling (:class:`MultiScaleFeatures`).

Callers that hold features without looking inside (the predictor, the mask generator) use
:func:`cat_features`, :func:`select_rows` and :func:`image_embedding`, which take either kind.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

from promptseg.sam2.modeling.features import MultiScaleFeatures

__all__ = ["Features", "MultiScaleFeatures", "cat_features", "image_embedding", "select_rows"]

Features = Union[torch.Tensor, MultiScaleFeatures]
"""(B, C, H, W) embeddings (SAM) or :class:`MultiScaleFeatures` (SAM 2)."""


def cat_features(parts: Sequence[Features]) -> Features:
    """The features of every image of ``parts`` (all of one kind), in order."""
    if isinstance(parts[0], MultiScaleFeatures):
        return MultiScaleFeatures.cat(parts)  # type: ignore[arg-type]
    return torch.cat(list(parts))  # type: ignore[arg-type]


def select_rows(features: Features, index: Union[torch.Tensor, slice]) -> Features:
    """The features of the images at ``index``."""
    if isinstance(features, MultiScaleFeatures):
        return features.rows(index)
    return features[index]


def image_embedding(features: Features) -> torch.Tensor:
    """The (B, C, H, W) image embeddings of either kind of features."""
    return features.embedding if isinstance(features, MultiScaleFeatures) else features
