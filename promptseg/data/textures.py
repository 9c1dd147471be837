"""Fills for synthetic objects and backgrounds: flat colours, gradients, stripes, checkers,
smooth noise, and crops of photographs shipped with the package."""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import numpy as np
from PIL import Image

from promptseg.io import decode_image

FILL_KINDS = ("flat", "gradient", "stripes", "checker", "noise")


def random_color(rng: np.random.Generator) -> np.ndarray:
    """(3,) float32 RGB in [0, 255]."""
    return rng.uniform(0, 255, 3).astype(np.float32)


def smooth_noise(size: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: bilinearly upsampled random values on a cells x cells grid."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return np.array(Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR))


def fill(size: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """(size, size, 3) float32 RGB texture of ``kind`` (one of :data:`FILL_KINDS`)."""
    first, second = random_color(rng), random_color(rng)
    if kind == "flat":
        weight = np.zeros((size, size), np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        weight = ((xs * math.cos(angle) + ys * math.sin(angle)) % 1.0).astype(np.float32)
    elif kind == "stripes":
        angle, period = rng.uniform(0, math.pi), rng.uniform(4, 16) * size / 256
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        weight = 0.5 + 0.5 * np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period)
    elif kind == "checker":
        period = int(rng.integers(4, 14) * size / 256) or 1
        ys, xs = np.mgrid[0:size, 0:size]
        weight = (((xs // period) + (ys // period)) % 2).astype(np.float32)
    elif kind == "noise":
        weight = smooth_noise(size, rng, int(rng.integers(4, 24)))
    else:
        raise ValueError(f"unknown fill kind {kind!r}; expected one of {FILL_KINDS}")
    return first + weight[..., None] * (second - first)


@lru_cache(maxsize=None)
def _photographs() -> tuple[np.ndarray, ...]:
    folder = resources.files("promptseg.data") / "backgrounds"
    return tuple(
        decode_image((folder / name).read_bytes(), name)
        for name in sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".jpg"))
    )


def photo_crop(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 random crop of a shipped photograph, resized and maybe mirrored."""
    photo = _photographs()[int(rng.integers(len(_photographs())))]
    height, width = photo.shape[:2]
    side = int(rng.uniform(0.35, 1.0) * min(height, width))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((size, size), Image.BILINEAR)
    array = np.array(crop, dtype=np.float32)
    return array[:, ::-1] if rng.random() < 0.5 else array
