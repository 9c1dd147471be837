"""Captioned synthetic scenes: objects drawn from the concept vocabulary, each with its attributes.

Unlike :func:`promptseg.data.synthetic.generate_scene` (random colours and shapes, for the
promptable task), every object here is one of :data:`promptseg.text.SHAPES` painted in one of
:data:`promptseg.text.COLOURS` (a flat fill, or stripes, checkers or a gradient in shades of that
colour, named by a :data:`promptseg.text.FILLS` word), so its caption says what it shows. Objects
overlap little; some fat objects carry a part (a smaller shape of another colour inside them,
captioned too), so a click on the part is ambiguous between the part and the whole. Concepts
repeat within a scene at times, so "every red star" can have several answers. A scene is a pure
function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from promptseg.data.shapes import annulus, blob, ellipse, rectangle, regular_polygon, stroke
from promptseg.data.synthetic import Scene, SeedLike, visible_masks
from promptseg.data.textures import photo_crop, smooth_noise
from promptseg.text.vocabulary import COLOURS, FILLS, SHAPES, parse_query, shape_matches

# Seeds of the captioned splits: training draws scenes (CONCEPT_TRAIN_SEED, i), validation
# (CONCEPT_VALIDATION_SEED, i); CONCEPT_HELD_OUT_SEED is never used by training or validation of any
# text model: the acceptance tests score on it.
CONCEPT_TRAIN_SEED = 3100
CONCEPT_VALIDATION_SEED = 3200
CONCEPT_HELD_OUT_SEED = 9998

FILL_WEIGHTS = (0.55, 0.15, 0.15, 0.15)  # plain, striped, checkered, shaded
PART_SHAPES = ("circle", "square", "triangle", "star", "ellipse")
HOLDING_SHAPES = ("ellipse", "circle", "rectangle", "square", "blob")  # fat enough to carry a part
MIN_CONTRAST = 90.0  # RGB distance between an object's colour and what lies under it


@dataclass(frozen=True)
class ConceptAttributes:
    """What one instance is: vocabulary words (size and position are None where they do not apply)."""

    colour: str
    shape: str
    fill: str
    size: Optional[str] = None
    position: Optional[str] = None

    def phrase(self, full: bool = False) -> str:
        """``"striped red star"``; with ``full``, also size and position (``"small striped red star on the left"``)."""
        words = [self.fill, self.colour, self.shape]
        if full and self.size:
            words.insert(0, self.size)
        text = " ".join(words)
        if full and self.position:
            text += " in the centre" if self.position == "centre" else f" on the {self.position}"
        return text

    def matches(self, query: dict[str, str]) -> bool:
        """Whether every attribute that ``query`` (see :func:`promptseg.text.vocabulary.parse_query`) names holds."""
        for key, value in query.items():
            if key == "shape":
                if not shape_matches(value, self.shape):
                    return False
            elif key == "position":
                if self.position is None or not set(value.split()) <= set(self.position.split()):
                    return False
            elif getattr(self, key) != value:
                return False
        return True


@dataclass(frozen=True)
class ConceptScene(Scene):
    """A :class:`promptseg.data.synthetic.Scene` whose instances are captioned.

    Attributes:
        attributes: (K,) :class:`ConceptAttributes`, one per instance (``kinds`` holds their shape names).
    """

    attributes: tuple[ConceptAttributes, ...] = ()

    def caption(self, index: int, full: bool = False) -> str:
        """Caption of instance ``index``: fill, colour and shape (what a crop of it shows); ``full`` adds size and position."""
        if not 0 <= index < len(self.attributes):
            raise IndexError(f"instance index {index} out of range [0, {len(self.attributes)})")
        return self.attributes[index].phrase(full)

    def captions(self, full: bool = False) -> list[str]:
        """(K,) captions of every instance."""
        return [attributes.phrase(full) for attributes in self.attributes]

    def unique_captions(self) -> dict[int, str]:
        """Instance index -> caption, for the instances whose caption (fill, colour, shape) no other
        instance of the scene matches: the text alone names them."""
        result = {}
        for index, attributes in enumerate(self.attributes):
            query = parse_query(attributes.phrase())
            if sum(other.matches(query) for other in self.attributes) == 1:
                result[index] = attributes.phrase()
        return result

    def matching(self, query: str) -> np.ndarray:
        """(M,) int64 indices of the instances the phrase ``query`` describes (every attribute it names holds)."""
        parsed = parse_query(query)
        if not parsed:
            raise ValueError(f"the query {query!r} names no vocabulary word (see promptseg.text.vocabulary)")
        return np.array([i for i, a in enumerate(self.attributes) if a.matches(parsed)], dtype=np.int64)


def generate_concept_scene(seed: SeedLike, size: int = 256, max_objects: int = 7, part_probability: float = 0.35) -> ConceptScene:
    """Draw one captioned scene.

    Args:
        seed: an int, a sequence of ints or a numpy Generator.
        size: side of the square image in pixels.
        max_objects: at most this many top-level objects (at least 3 are tried).
        part_probability: chance that a fat object gets a part inside it.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    image = _background(size, rng)
    occupied = np.zeros((size, size), dtype=bool)
    shapes: list[np.ndarray] = []
    parents: list[int] = []
    attributes: list[ConceptAttributes] = []
    for _ in range(int(rng.integers(3, max_objects + 1))):
        concept = _pick_concept(rng, attributes, parents)
        placed = _place(size, rng, concept[1], occupied)
        if placed is None:
            continue
        shape, footprint, centre, radius = placed
        colour = _contrasting_colour(rng, concept[0], image[shape].mean(axis=0))
        fill_word = FILLS[int(rng.choice(len(FILLS), p=FILL_WEIGHTS))]
        image[shape] = _paint(size, rng, colour, fill_word)[shape]
        occupied |= footprint
        whole = len(shapes)
        shapes.append(shape)
        parents.append(-1)
        attributes.append(ConceptAttributes(colour, concept[1], fill_word))
        if concept[1] in HOLDING_SHAPES and rng.random() < part_probability:
            part = _part_inside(size, rng, shape, centre, radius)
            if part is not None:
                part_colour = _contrasting_colour(rng, None, np.array(COLOURS[colour], np.float32))
                part_fill = FILLS[int(rng.choice(len(FILLS), p=FILL_WEIGHTS))]
                image[part[0]] = _paint(size, rng, part_colour, part_fill)[part[0]]
                shapes.append(part[0])
                parents.append(whole)
                attributes.append(ConceptAttributes(part_colour, part[1], part_fill))
    image = _finish(image, rng)
    return _captioned(image, shapes, parents, attributes, size)


def _pick_concept(rng: np.random.Generator, attributes: list[ConceptAttributes], parents: list[int]) -> tuple[Optional[str], str]:
    """(colour or None for any, shape): sometimes a repeat of an earlier top-level object's concept."""
    earlier = [a for a, p in zip(attributes, parents) if p < 0]
    if earlier and rng.random() < 0.3:
        pick = earlier[int(rng.integers(len(earlier)))]
        return pick.colour, pick.shape
    return None, SHAPES[int(rng.integers(len(SHAPES)))]


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 low-contrast background: a muted photograph, gradient or smooth noise."""
    tone = rng.uniform(40, 215, 3).astype(np.float32)
    while np.linalg.norm(tone - 128.0) < 85:  # leave room for grey objects
        tone = rng.uniform(40, 215, 3).astype(np.float32)
    kind = int(rng.integers(3))
    if kind == 0:
        texture = photo_crop(size, rng)
    else:
        weight = smooth_noise(size, rng, int(rng.integers(2, 6)) if kind == 1 else 2)
        texture = (tone + (weight[..., None] - 0.5) * rng.uniform(40, 90)).astype(np.float32)
    return (0.45 * texture + 0.55 * tone).astype(np.float32)


def _draw_shape(size: int, rng: np.random.Generator, name: str, centre: tuple[float, float], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask, footprint) of a ``name`` shape; the footprint is the mask with holes filled (a ring's disc)."""
    angle = rng.uniform(0, math.pi)
    if name == "ellipse":
        mask = ellipse(size, centre, (radius, radius * rng.uniform(0.4, 0.62)), angle)
    elif name == "circle":
        mask = ellipse(size, centre, (0.85 * radius, 0.85 * radius), 0.0)
    elif name == "rectangle":
        mask = rectangle(size, centre, (0.95 * radius, radius * rng.uniform(0.38, 0.6)), angle)
    elif name == "square":
        mask = rectangle(size, centre, (0.75 * radius, 0.75 * radius), angle)
    elif name == "triangle":
        mask = regular_polygon(size, centre, [1.1 * radius] * 3, rng.uniform(0, 2 * math.pi))
    elif name == "star":
        mask = regular_polygon(size, centre, [1.1 * radius, 0.45 * radius] * 5, rng.uniform(0, 2 * math.pi))
    elif name == "ring":
        mask = annulus(size, centre, radius, radius * rng.uniform(0.5, 0.68))
        return mask, ellipse(size, centre, (radius, radius), 0.0)
    elif name == "stroke":
        width = max(4, int(round(rng.uniform(5, 9) * size / 256)))
        mask = stroke(size, rng, centre, 1.2 * radius, width)
    elif name == "blob":
        mask = blob(size, rng, centre, radius)
    else:
        raise ValueError(f"unknown shape {name!r}; expected one of {SHAPES}")
    return mask, mask


def _place(size: int, rng: np.random.Generator, name: str, occupied: np.ndarray):
    """A shape that overlaps what is drawn by under 8% of its area: (mask, footprint, centre, radius) or None."""
    for _ in range(8):
        radius = rng.uniform(0.075, 0.19) * size
        centre = tuple(rng.uniform(radius, size - radius, 2))
        mask, footprint = _draw_shape(size, rng, name, centre, radius)
        area = footprint.sum()
        if area >= 0.006 * size * size and (footprint & occupied).sum() < 0.08 * area:
            return mask, footprint, centre, radius
    return None


def _part_inside(size: int, rng: np.random.Generator, whole: np.ndarray, centre: tuple[float, float], radius: float):
    """(mask, shape name) of a part lying wholly inside ``whole`` and covering 10-45% of it, or None."""
    name = PART_SHAPES[int(rng.integers(len(PART_SHAPES)))]
    for _ in range(4):
        offset = rng.uniform(-0.15, 0.15, 2) * radius
        part, _ = _draw_shape(size, rng, name, (centre[0] + offset[0], centre[1] + offset[1]), rng.uniform(0.32, 0.45) * radius)
        if not (part & ~whole).any() and 0.1 <= part.sum() / whole.sum() <= 0.45:
            return part, name
    return None


def _contrasting_colour(rng: np.random.Generator, wanted: Optional[str], under: np.ndarray) -> str:
    """``wanted``, or a random colour name, whose RGB lies at least MIN_CONTRAST from ``under`` (3,) when one does."""
    names = list(COLOURS)
    far = [n for n in names if np.linalg.norm(np.array(COLOURS[n], np.float32) - under) >= MIN_CONTRAST]
    if wanted is not None and wanted in far:
        return wanted
    pool = far or names
    return pool[int(rng.integers(len(pool)))]


def _shade(rgb: np.ndarray) -> np.ndarray:
    """The second shade of a textured fill: darker for light colours, lighter for dark ones."""
    return rgb * 0.62 if rgb.mean() > 70 else rgb + 75.0


def _paint(size: int, rng: np.random.Generator, colour: str, fill_word: str) -> np.ndarray:
    """(size, size, 3) float32 ``fill_word`` texture in shades of ``colour``."""
    first = np.array(COLOURS[colour], np.float32)
    second = _shade(first)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    if fill_word == "plain":
        weight = np.zeros((size, size), np.float32)
    elif fill_word == "striped":  # periods wide enough to survive a crop shrunk to an encoder's input
        period = rng.uniform(10, 15) * size / 256
        weight = ((xs * math.cos(angle) + ys * math.sin(angle)) % period < period / 2).astype(np.float32)
    elif fill_word == "checkered":
        period = max(2, int(rng.uniform(8, 12) * size / 256))
        weight = (((xs // period) + (ys // period)) % 2).astype(np.float32)
    elif fill_word == "shaded":  # a smooth light-to-dark wave about an object's size long
        period = rng.uniform(70, 100) * size / 256
        phase = rng.uniform(0, 2 * math.pi)
        weight = (0.5 + 0.5 * np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period + phase)).astype(np.float32)
    else:
        raise ValueError(f"unknown fill {fill_word!r}; expected one of {FILLS}")
    return first + weight[..., None] * (second - first)


def _finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild shading and sensor noise; uint8."""
    size = image.shape[0]
    shading = 0.92 + 0.16 * smooth_noise(size, rng, 3)
    noisy = image * shading[..., None] + rng.normal(0, rng.uniform(1, 4), image.shape)
    return noisy.clip(0, 255).astype(np.uint8)


def _size_word(area: float, image_area: float) -> Optional[str]:
    fraction = area / image_area
    return "small" if fraction < 0.015 else "large" if fraction > 0.045 else None


def _position_word(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    cx, cy = xs.mean() / width, ys.mean() / height
    vertical = "top" if cy < 0.33 else "bottom" if cy > 0.67 else ""
    horizontal = "left" if cx < 0.33 else "right" if cx > 0.67 else ""
    return " ".join(w for w in (vertical, horizontal) if w) or "centre"


def _captioned(image, shapes, parents, attributes, size) -> ConceptScene:
    """Visible masks (later objects cover earlier ones, a whole keeps its parts), small ones dropped, words of size and position."""
    visible = visible_masks(shapes, parents, size)
    keep = visible.sum(axis=(1, 2)) >= 0.004 * size * size
    for index, parent in enumerate(parents):
        if parent >= 0 and not keep[parent]:
            keep[index] = False
    new_index = np.cumsum(keep) - 1
    kept_parents = np.array([new_index[p] if p >= 0 else -1 for p, k in zip(parents, keep) if k], dtype=np.int64)
    records = []
    for index in np.flatnonzero(keep):
        a = attributes[index]
        if parents[index] < 0:
            a = ConceptAttributes(a.colour, a.shape, a.fill, _size_word(visible[index].sum(), size * size), _position_word(visible[index]))
        records.append(a)
    return ConceptScene(
        image, visible[keep], kept_parents, tuple(a.shape for a in records), attributes=tuple(records)
    )
