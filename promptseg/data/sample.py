"""The sample format shared by every dataset: an image and its instance masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from promptseg.masks import deepest_points


@dataclass(frozen=True)
class Sample:
    """An image and its instances.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        masks: (K, H, W) bool, one mask per instance.
    """

    image: np.ndarray
    masks: np.ndarray

    def own_region(self, index: int) -> np.ndarray:
        """(H, W) bool pixels that belong to instance ``index`` alone (where a click is unambiguous)."""
        return self.masks[index]

    def first_clicks(self) -> np.ndarray:
        """(K, 2) float64 (x, y): for each instance, the pixel of its own region farthest from
        that region's boundary (the click of the evaluation protocol and of the demo)."""
        if len(self.masks) == 0:
            return np.zeros((0, 2))
        regions = torch.from_numpy(np.stack([self.own_region(i) for i in range(len(self.masks))]))
        return deepest_points(regions).double().numpy()
