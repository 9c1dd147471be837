"""The masks automatic mask generation keeps between its stages, held on the device.

A candidate is kept as its low-resolution logits, not as a full-size mask:
the full-size mask is recomputed (the same upsampling, so the same pixels) only
for the candidates that survive every filter, a few at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass(frozen=True)
class Crop:
    """One crop of one image, and the grid points prompted in it.

    Attributes:
        box: XYXY in image pixels (x1, y1 exclusive).
        layer: crop layer, 0 for the whole image.
        input_size: (h, w) of the crop resized for the encoder, before padding.
        points: (P, 2) float64 (x, y) of the grid points in crop pixels.
    """

    box: tuple[int, int, int, int]
    layer: int
    input_size: tuple[int, int]
    points: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the crop."""
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0

    @property
    def area(self) -> int:
        height, width = self.size
        return height * width


@dataclass
class Candidates:
    """N candidate masks of one image.

    Attributes:
        low_res_logits: (N, S, S) decoder logits, in the model dtype.
        iou_predictions: (N,) float32 predicted IoU.
        stability_scores: (N,) float32.
        boxes: (N, 4) int64 XYXY (inclusive) in the frame of the crop while in
            a crop's stage, in the image frame after.
        point_index: (N,) int64 grid point (into ``Crop.points``) that prompted each mask.
        crop_index: (N,) int64 crop (into the image's crop list) of each mask.
    """

    low_res_logits: torch.Tensor
    iou_predictions: torch.Tensor
    stability_scores: torch.Tensor
    boxes: torch.Tensor
    point_index: torch.Tensor
    crop_index: torch.Tensor

    def __len__(self) -> int:
        return len(self.iou_predictions)

    def select(self, index: torch.Tensor) -> "Candidates":
        """The candidates at ``index`` ((K,) int64 or (N,) bool), in that order."""
        return Candidates(**{field.name: getattr(self, field.name)[index] for field in fields(self)})

    @staticmethod
    def cat(parts: list["Candidates"]) -> "Candidates":
        """All candidates of ``parts`` (at least one), in order."""
        return Candidates(
            **{field.name: torch.cat([getattr(part, field.name) for part in parts]) for field in fields(Candidates)}
        )
