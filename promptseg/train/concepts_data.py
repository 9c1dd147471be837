"""Crops and captions from captioned scenes: the training and evaluation data of concept encoders."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from promptseg.data.concepts import ConceptAttributes, ConceptScene
from promptseg.text.crops import box_crop, object_crop
from promptseg.text.vocabulary import SHAPE_FAMILIES, SYNONYMS

CROP_EXPAND = 1.25
TEMPLATES = ("{}", "a {}", "the {}", "a {} shape", "{} object")
_SPELLINGS = {}
for _variant, _word in SYNONYMS.items():
    _SPELLINGS.setdefault(_word, []).append(_variant)


def resized(crop: np.ndarray, side: int) -> np.ndarray:
    """(side, side, 3) uint8 bilinear resize of a square crop."""
    if crop.shape[:2] == (side, side):
        return crop
    return np.asarray(Image.fromarray(crop).resize((side, side), Image.BILINEAR))


def scene_crops(scene: ConceptScene, side: int, expand: float = CROP_EXPAND) -> np.ndarray:
    """(K, side, side, 3) uint8 crops around each instance of ``scene``, in instance order."""
    return np.stack([resized(object_crop(scene.image, mask, expand), side) for mask in scene.masks])


def background_crops(scene: ConceptScene, rng: np.random.Generator, count: int, side: int) -> np.ndarray:
    """(<=count, side, side, 3) uint8 crops of square windows in which objects cover under 10%."""
    covered = scene.masks.any(axis=0)
    size = scene.image.shape[0]
    crops = []
    for _ in range(count * 6):
        width = rng.uniform(0.12, 0.4) * size
        x0, y0 = rng.uniform(0, size - width, 2)
        window = covered[int(y0) : int(y0 + width), int(x0) : int(x0 + width)]
        if window.size and window.mean() < 0.1:
            crops.append(resized(box_crop(scene.image, (x0, y0, x0 + width, y0 + width), 1.0), side))
            if len(crops) == count:
                break
    return np.stack(crops) if crops else np.zeros((0, side, side, 3), np.uint8)


def sample_caption(attributes: ConceptAttributes, rng: np.random.Generator) -> tuple[str, dict[str, str]]:
    """A phrase naming some of an instance's visible attributes, and the attributes it names.

    Half the time the full caption (fill, colour, shape); otherwise a random non-empty subset,
    a shape sometimes by its family word, sometimes with size/position words (which name nothing
    a crop shows) or a spelling variant, in one of a few templates.
    """
    named: dict[str, str] = {}
    if rng.random() < 0.5:
        named = {"fill": attributes.fill, "colour": attributes.colour, "shape": attributes.shape}
    else:
        while not named:
            for key in ("fill", "colour", "shape"):
                if rng.random() < 0.55:
                    named[key] = getattr(attributes, key)
    if "shape" in named and rng.random() < 0.2:
        named["shape"] = SHAPE_FAMILIES[named["shape"]]
    words = [named[key] for key in ("fill", "colour", "shape") if key in named]
    words = [rng.choice(_SPELLINGS[w]) if w in _SPELLINGS and rng.random() < 0.15 else w for w in words]
    if attributes.size and rng.random() < 0.15:
        words.insert(0, attributes.size)
    text = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(" ".join(words))
    if attributes.position and rng.random() < 0.1:
        text += f" on the {attributes.position}"
    return text, named


def match_matrix(queries: Sequence[dict[str, str]], attributes: Sequence[ConceptAttributes | None]) -> np.ndarray:
    """(Q, N) bool: query q describes instance n (None instances, backgrounds, match nothing)."""
    return np.array([[a is not None and a.matches(q) for a in attributes] for q in queries], dtype=bool)
