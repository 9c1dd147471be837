"""Turning dataset samples into model-ready training batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from promptseg.data.sample import Sample
from promptseg.modeling import Sam
from promptseg.prompts.frames import ResizeLongestSide


@dataclass
class TrainBatch:
    """B images and P prompted objects.

    Attributes:
        images: (B, 3, S, S) normalised, padded encoder input in the model dtype.
        targets: (P, S, S) bool ground truth in the padded input frame.
        image_index: (P,) int64 image of each object.
    """

    images: torch.Tensor
    targets: torch.Tensor
    image_index: torch.Tensor


def resize_masks(masks: np.ndarray, size: tuple[int, int], side: int) -> torch.Tensor:
    """(K, H, W) bool -> (K, side, side) bool: resized to (h, w) = ``size`` then zero-padded bottom/right."""
    if len(masks) == 0:
        return torch.zeros((0, side, side), dtype=torch.bool)
    tensor = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None]
    if tuple(tensor.shape[-2:]) != tuple(size):
        tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
    resized = tensor[:, 0] >= 0.5
    return F.pad(resized, (0, side - size[1], 0, side - size[0]))


def prepare_batch(samples: Sequence[Sample], model: Sam, objects_per_image: int, generator: torch.Generator) -> TrainBatch:
    """Resize every sample to the model input and pick up to ``objects_per_image`` non-empty
    instances of each at random (with ``generator``)."""
    side = model.image_encoder.img_size
    transform = ResizeLongestSide(side)
    images, targets, image_index = [], [], []
    for index, sample in enumerate(samples):
        resized = transform.apply_image(sample.image)
        size = resized.shape[:2]
        image = torch.from_numpy(resized).permute(2, 0, 1).to(model.device)
        images.append(model.preprocess(image))
        masks = resize_masks(sample.masks, size, side)
        present = torch.nonzero(masks.flatten(1).any(1))[:, 0]
        order = torch.randperm(len(present), generator=generator)[:objects_per_image]
        chosen = masks[present[order]]
        targets.append(chosen)
        image_index.extend([index] * len(chosen))
    return TrainBatch(
        images=torch.stack(images),
        targets=torch.cat(targets).to(model.device),
        image_index=torch.tensor(image_index, dtype=torch.long, device=model.device),
    )
