"""Choosing the training and validation data of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from promptseg.data.coco import CocoInstances
from promptseg.data.sample import Sample
from promptseg.data.synthetic import TRAIN_SEED, VALIDATION_SEED, SyntheticScenes


def training_split(
    data_dir: Optional[Path],
    annotations: Optional[Path],
    synthetic: Optional[int],
    val_scenes: int,
    val_images: int,
) -> tuple[Sequence[Sample], Sequence[Sample]]:
    """(train, validation) datasets.

    Synthetic: ``synthetic`` scenes of the training seed, and ``val_scenes`` of the
    validation seed. COCO: the last ``val_images`` images (at most half) are held out
    for validation; a one-image dataset validates on its training image.
    """
    if (data_dir is None) == (synthetic is None):
        raise ValueError("give exactly one of a COCO data folder and a number of synthetic scenes")
    if synthetic is not None:
        return SyntheticScenes(synthetic, seed=TRAIN_SEED), SyntheticScenes(max(1, val_scenes), seed=VALIDATION_SEED)
    dataset = CocoInstances(data_dir / "images", annotations or data_dir / "instances.json")
    held_out = min(val_images, len(dataset) // 2)
    if held_out == 0:
        return dataset, dataset
    indices = list(range(len(dataset)))
    return (
        torch.utils.data.Subset(dataset, indices[:-held_out]),
        torch.utils.data.Subset(dataset, indices[-held_out:]),
    )
