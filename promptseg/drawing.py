"""Drawing masks and prompts over an image (the overlays of `promptseg predict` and `promptseg amg`)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

_PALETTE = np.array(
    [[30, 144, 255], [255, 99, 71], [50, 205, 50], [255, 215, 0], [186, 85, 211], [0, 206, 209], [255, 140, 0]],
    dtype=np.float32,
)


def overlay(
    image: np.ndarray,
    masks: np.ndarray,
    points: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    boxes: Sequence[Sequence[float]] = (),
    alpha: float = 0.45,
) -> Image.Image:
    """Blend masks over an image and mark the prompts.

    Args:
        image: (H, W, 3) uint8 RGB.
        masks: (N, H, W) bool, drawn in palette order (later masks on top).
        points: (K, 2) pixel (x, y); labels: (K,) 1 foreground (green) / 0 background (red).
        boxes: XYXY boxes drawn as outlines.
    Returns:
        An RGB PIL image.
    """
    canvas = image.astype(np.float32)
    for index, mask in enumerate(masks):
        color = _PALETTE[index % len(_PALETTE)]
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * color
    result = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(result)
    radius = max(4, round(0.008 * max(image.shape[:2])))
    for box in boxes:
        draw.rectangle([float(v) for v in box], outline=(255, 255, 0), width=max(2, radius // 2))
    if points is not None and labels is not None:
        for (x, y), label in zip(points, labels):
            fill = (0, 220, 0) if label == 1 else (230, 0, 0)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill, outline=(255, 255, 255), width=2)
    return result
