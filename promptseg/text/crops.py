"""Object crops for concept encoders: a square window around a mask's box, expanded for context."""

from __future__ import annotations

import numpy as np


def object_crop(image: np.ndarray, mask: np.ndarray, expand: float = 1.2) -> np.ndarray:
    """(S, S, 3) uint8 square crop of ``image`` centred on the box of ``mask``.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) bool, not empty.
        expand: the crop's side is this times the box's longer side (border pixels repeat
            where the window leaves the image).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"expected an (H, W) mask of the image's size {image.shape[:2]}, got {mask.shape}")
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("cannot crop around an empty mask")
    return box_crop(image, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), expand)


def box_crop(image: np.ndarray, box: tuple[float, float, float, float], expand: float = 1.2) -> np.ndarray:
    """(S, S, 3) uint8 square crop centred on the XYXY ``box``, side ``expand`` times its longer side."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(2, int(round(max(x1 - x0, y1 - y0) * expand)))
    left = int(round((x0 + x1) / 2 - side / 2))
    top = int(round((y0 + y1) / 2 - side / 2))
    height, width = image.shape[:2]
    pad = max(0, -left, -top, left + side - width, top + side - height)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return np.ascontiguousarray(image[top + pad : top + pad + side, left + pad : left + pad + side])
