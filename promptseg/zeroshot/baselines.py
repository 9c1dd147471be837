"""Classical baselines that the zero-shot tasks are measured against (no model involved).

- :func:`image_sobel_edges`: Sobel gradient magnitude of the image itself, thinned by the same edge NMS
  as SAM's edge maps.
- :func:`sliding_window_boxes`: a fixed grid of boxes at several scales and aspect ratios, the
  proposals a detector-free sliding window gives.
- :func:`box_masks`: boxes filled as masks (the instance baseline: each detection's box as its mask).
"""

from __future__ import annotations

import numpy as np
import torch

from promptseg.prompts.validate import check_image
from promptseg.zeroshot.edge_maps import edge_nms, sobel_magnitude

# Colour channels are weighted as in ITU-R BT.601 luma.
LUMA = (0.299, 0.587, 0.114)


def image_sobel_edges(image: np.ndarray, thin: bool = True) -> np.ndarray:
    """(H, W) float32 edge map in [0, 1]: Sobel magnitude of the (H, W, 3) uint8 image's luma / 255,
    scaled so that the strongest edge of the image is 1, then thinned by edge NMS."""
    check_image(image, "RGB")
    luma = torch.from_numpy(image.astype(np.float32) @ np.array(LUMA, dtype=np.float32)) / 255.0
    magnitude = sobel_magnitude(luma[None])[0]
    magnitude = magnitude / magnitude.max().clamp(min=1e-6)
    return (edge_nms(magnitude) if thin else magnitude).clamp(0, 1).numpy()


def sliding_window_boxes(
    height: int, width: int, count: int, scales: tuple[float, ...] = (0.1, 0.2, 0.3, 0.45, 0.65, 0.9),
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
) -> np.ndarray:
    """(count, 4) float XYXY boxes of a sliding window over an image.

    Every (scale, aspect ratio) window (side ``scale * sqrt(H * W)``, width/height = ratio) is slid
    over the image with a stride of half its size; the windows of all shapes are then taken in an
    order that interleaves the shapes (position by position), so the first ``count`` cover every
    shape about equally. Repeats the list if fewer windows exist than ``count``.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    per_shape = []
    for scale in scales:
        for ratio in aspect_ratios:
            box_w = min(width, scale * np.sqrt(height * width) * np.sqrt(ratio))
            box_h = min(height, scale * np.sqrt(height * width) / np.sqrt(ratio))
            xs = np.arange(0, width - box_w + 1e-6, max(box_w / 2, 1.0))
            ys = np.arange(0, height - box_h + 1e-6, max(box_h / 2, 1.0))
            grid_x, grid_y = np.meshgrid(xs, ys)
            boxes = np.stack([grid_x, grid_y, grid_x + box_w, grid_y + box_h], -1).reshape(-1, 4)
            # Spread the picks of this shape over the image (a regular subsample first).
            order = np.argsort((np.arange(len(boxes)) * 0.6180339887) % 1.0, kind="stable")
            per_shape.append(boxes[order])
    longest = max(len(boxes) for boxes in per_shape)
    interleaved = [boxes[i] for i in range(longest) for boxes in per_shape if i < len(boxes)]
    boxes = np.array(interleaved)
    repeats = int(np.ceil(count / len(boxes)))
    return np.tile(boxes, (repeats, 1))[:count]


def box_masks(boxes_xyxy: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, H, W) bool masks filling each (N, 4) XYXY box (pixels whose centres fall inside it)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    centres_x = np.arange(width) + 0.5
    centres_y = np.arange(height) + 0.5
    inside_x = (centres_x[None] >= boxes[:, 0:1]) & (centres_x[None] <= boxes[:, 2:3])
    inside_y = (centres_y[None] >= boxes[:, 1:2]) & (centres_y[None] <= boxes[:, 3:4])
    return inside_y[:, :, None] & inside_x[:, None, :]
