"""Synthetic scenes for the promptable segmentation task.

A scene has several overlapping objects of varied shapes (ellipses, polygons,
blobs, thin strokes and rings) filled with flat colours, gradients or textures,
over a gradient, textured, cluttered or photographic background. Later objects
occlude earlier ones. Some objects carry a part (a smaller shape inside them
with its own fill), so a click on the part is truly ambiguous between the part
and the whole. Every scene is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch

from promptseg.data.sample import Sample
from promptseg.data.shapes import SHAPE_KINDS, random_shape
from promptseg.data.textures import FILL_KINDS, fill, photo_crop, random_color, smooth_noise

SeedLike = Union[int, Sequence[int], np.random.Generator]
BACKGROUND_KINDS = ("gradient", "texture", "clutter", "photo")

# Seeds of the synthetic splits. Training draws scenes (TRAIN_SEED, i), validation (VALIDATION_SEED, i);
# HELD_OUT_SEED is never used by training or validation: the acceptance test scores the bundled model on it.
TRAIN_SEED = 1000
VALIDATION_SEED = 2000
HELD_OUT_SEED = 9999


@dataclass(frozen=True)
class Scene(Sample):
    """A synthetic image and its instances.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        masks: (K, H, W) bool visible region of each instance (a whole includes its part).
        parents: (K,) int64 index of the whole an instance is a part of, -1 for top-level objects.
        kinds: shape kind of each instance (see :data:`promptseg.data.shapes.SHAPE_KINDS`), or "part".
    """

    parents: np.ndarray
    kinds: tuple[str, ...]

    def own_region(self, index: int) -> np.ndarray:
        """(H, W) bool pixels of instance ``index`` not covered by any of its parts."""
        region = self.masks[index].copy()
        for child in np.flatnonzero(self.parents == index):
            region &= ~self.masks[child]
        return region


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    if kind == "photo":
        return photo_crop(size, rng)
    if kind == "gradient":
        base = fill(size, rng, "gradient")
    else:
        base = fill(size, rng, FILL_KINDS[int(rng.integers(len(FILL_KINDS)))])
        base = 0.5 * base + 0.5 * random_color(rng)  # lower contrast than objects
    if kind == "clutter":
        for _ in range(int(rng.integers(10, 30))):
            center = rng.uniform(0, size, 2)
            mask = random_shape(size, rng, SHAPE_KINDS[int(rng.integers(3))], tuple(center), rng.uniform(0.01, 0.035) * size)
            base[mask] = random_color(rng)
    return base


def generate_scene(seed: SeedLike, size: int = 256, max_objects: int = 6, part_probability: float = 0.35) -> Scene:
    """Draw one scene.

    Args:
        seed: an int, a sequence of ints or a numpy Generator.
        size: side of the square image in pixels.
        max_objects: at most this many top-level objects (at least 2 are drawn).
        part_probability: chance that an object gets a part inside it.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    image = _background(size, rng)
    shapes: list[np.ndarray] = []
    parents: list[int] = []
    kinds: list[str] = []
    for _ in range(int(rng.integers(2, max_objects + 1))):
        kind = SHAPE_KINDS[int(rng.choice(len(SHAPE_KINDS), p=[0.3, 0.3, 0.25, 0.15]))]
        radius = rng.uniform(0.08, 0.26) * size
        center = tuple(rng.uniform(0.12 * size, 0.88 * size, 2))
        shape = random_shape(size, rng, kind, center, radius)
        if shape.sum() < 0.004 * size * size:
            continue
        image[shape] = fill(size, rng, FILL_KINDS[int(rng.integers(len(FILL_KINDS)))])[shape]
        shapes.append(shape)
        parents.append(-1)
        kinds.append(kind)
        if kind != "thin" and rng.random() < part_probability:
            part = _part_inside(size, rng, shape)
            if part is not None:
                image[part] = fill(size, rng, FILL_KINDS[int(rng.integers(len(FILL_KINDS)))])[part]
                shapes.append(part)
                parents.append(len(shapes) - 2)
                kinds.append("part")
    masks = visible_masks(shapes, parents, size)
    image = _finish(image, rng)
    return _drop_small(image, masks, np.array(parents, dtype=np.int64), tuple(kinds), min_area=0.004 * size * size)


def _part_inside(size: int, rng: np.random.Generator, whole: np.ndarray) -> np.ndarray | None:
    """A shape inside ``whole`` covering roughly 15-45% of it, or None when none fits."""
    ys, xs = np.nonzero(whole)
    radius = np.sqrt(whole.sum() / np.pi)
    for _ in range(4):
        pick = int(rng.integers(len(xs)))
        center = (xs[pick] + 0.5, ys[pick] + 0.5)
        kind = ("ellipse", "polygon", "blob")[int(rng.integers(3))]
        part = random_shape(size, rng, kind, center, rng.uniform(0.35, 0.6) * radius) & whole
        if 0.12 <= part.sum() / whole.sum() <= 0.5:
            return part
    return None


def visible_masks(shapes: list[np.ndarray], parents: list[int], size: int) -> np.ndarray:
    """(K, size, size) bool: each instance minus what later objects (other than its own parts) paint over it.

    ``shapes`` are K (size, size) bool masks in paint order; ``parents[k]`` is the index of the whole that
    instance k is a part of, or -1. Neither is modified. The one occlusion rule of every synthetic scene generator.
    """
    masks = np.stack(shapes) if shapes else np.zeros((0, size, size), dtype=bool)
    visible = masks.copy()
    for index in range(len(shapes)):
        for later in range(index + 1, len(shapes)):
            if parents[later] != index:
                visible[index] &= ~masks[later]
    return visible


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add low-frequency shading and sensor noise; return uint8."""
    size = image.shape[0]
    shading = 0.8 + 0.4 * smooth_noise(size, rng, 3)
    noisy = image * shading[..., None] + rng.normal(0, rng.uniform(1, 6), image.shape)
    return noisy.clip(0, 255).astype(np.uint8)


def _drop_small(image: np.ndarray, masks: np.ndarray, parents: np.ndarray, kinds: tuple[str, ...], min_area: float) -> Scene:
    """Remove instances whose visible area is under ``min_area`` (and parts of removed wholes)."""
    keep = masks.sum(axis=(1, 2)) >= min_area
    for index, parent in enumerate(parents):
        if parent >= 0 and not keep[parent]:
            keep[index] = False
    new_index = np.cumsum(keep) - 1
    kept_parents = np.array([new_index[p] if p >= 0 else -1 for p in parents[keep]], dtype=np.int64)
    return Scene(image, masks[keep], kept_parents, tuple(k for k, kept in zip(kinds, keep) if kept))


class SyntheticScenes(torch.utils.data.Dataset):
    """``count`` scenes; scene i is ``generate_scene((seed, i), size)``, so any subset is reproducible."""

    def __init__(self, count: int, seed: int, size: int = 256) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.count, self.seed, self.size = count, seed, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Scene:
        if not 0 <= index < self.count:
            raise IndexError(f"scene index {index} out of range [0, {self.count})")
        return generate_scene((self.seed, index), self.size)
