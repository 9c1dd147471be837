"""Where automatic mask generation prompts: point grids in [0, 1]^2 and crop boxes in pixels.

The layouts equal ``segment_anything.utils.amg`` (same points, same crop
boxes, same order), so masks can be compared record by record.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n_per_side**2, 2) float64 (x, y) cell centres of an n x n grid over [0, 1]^2, x varying fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer 0..n_layers; layer i has int(n_per_side / scale_per_layer**i) points per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**layer))) for layer in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, ...], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes of every layer and the layer of each.

    Layer 0 is the whole image; layer i >= 1 tiles the image with
    (2**i) x (2**i) overlapping crops (overlap ``overlap_ratio`` of the
    short side at layer 1, shrinking with i), listed column by column.

    Args:
        im_size: (H, W) of the image.
    Returns:
        XYXY integer boxes (x1, y1 exclusive) and their layer indices.
    """
    height, width = im_size
    short_side = min(height, width)
    boxes, layers = [[0, 0, width, height]], [0]
    for layer in range(1, n_layers + 1):
        crops_per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / crops_per_side))
        crop_width = math.ceil((overlap * (crops_per_side - 1) + width) / crops_per_side)
        crop_height = math.ceil((overlap * (crops_per_side - 1) + height) / crops_per_side)
        lefts = [int((crop_width - overlap) * i) for i in range(crops_per_side)]
        tops = [int((crop_height - overlap) * i) for i in range(crops_per_side)]
        for left, top in product(lefts, tops):
            boxes.append([left, top, min(left + crop_width, width), min(top + crop_height, height)])
            layers.append(layer)
    return boxes, layers
