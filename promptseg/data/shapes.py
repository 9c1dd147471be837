"""Random shape masks for synthetic scenes: ellipses, polygons, blobs and thin structures."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

SHAPE_KINDS = ("ellipse", "polygon", "blob", "thin")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs + 0.5, ys + 0.5


def ellipse(size: int, center: tuple[float, float], radii: tuple[float, float], angle: float) -> np.ndarray:
    """(size, size) bool rotated ellipse."""
    xs, ys = _grid(size)
    dx, dy = xs - center[0], ys - center[1]
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = (dx * cos + dy * sin) / radii[0], (-dx * sin + dy * cos) / radii[1]
    return u * u + v * v <= 1.0


def polygon(size: int, rng: np.random.Generator, center: tuple[float, float], radius: float) -> np.ndarray:
    """(size, size) bool star-shaped polygon with 3-9 vertices around ``center``."""
    count = int(rng.integers(3, 10))
    angles = np.sort(rng.uniform(0, 2 * math.pi, count))
    radii = radius * rng.uniform(0.45, 1.0, count)
    points = [(center[0] + r * math.cos(a), center[1] + r * math.sin(a)) for a, r in zip(angles, radii)]
    canvas = Image.new("1", (size, size), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    return np.array(canvas, dtype=bool)


def blob(size: int, rng: np.random.Generator, center: tuple[float, float], radius: float) -> np.ndarray:
    """(size, size) bool smooth blob: a radius modulated by a few low harmonics of the angle."""
    xs, ys = _grid(size)
    dx, dy = xs - center[0], ys - center[1]
    theta = np.arctan2(dy, dx)
    boundary = np.ones_like(theta)
    for harmonic in range(2, 6):
        amplitude = rng.uniform(0, 0.35 / harmonic)
        boundary += amplitude * np.cos(harmonic * theta + rng.uniform(0, 2 * math.pi))
    return np.hypot(dx, dy) <= radius * boundary


def thin(size: int, rng: np.random.Generator, center: tuple[float, float], radius: float) -> np.ndarray:
    """(size, size) bool thin structure: a curved stroke (3-7 px wide) or a ring."""
    canvas = Image.new("1", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    width = int(rng.integers(max(3, size // 85), max(4, size // 36) + 1))
    if rng.random() < 0.3:
        box = [center[0] - radius, center[1] - radius, center[0] + radius, center[1] + radius]
        draw.ellipse(box, outline=1, width=width)
    else:
        start = rng.uniform(0, 2 * math.pi)
        sweep = rng.uniform(0.8, 1.6) * math.pi
        wobble = rng.uniform(0.2, 0.6)
        steps = np.linspace(0, 1, 24)
        angles = start + sweep * steps
        radii = radius * (1 + wobble * np.sin(2 * math.pi * steps * rng.uniform(0.5, 1.5)))
        points = [(center[0] + r * math.cos(a) * 1.3, center[1] + r * math.sin(a) * 0.7) for a, r in zip(angles, radii)]
        draw.line(points, fill=1, width=width, joint="curve")
    return np.array(canvas, dtype=bool)


def random_shape(size: int, rng: np.random.Generator, kind: str, center: tuple[float, float], radius: float) -> np.ndarray:
    """A (size, size) bool mask of ``kind`` (one of :data:`SHAPE_KINDS`) centred near ``center``."""
    if kind == "ellipse":
        aspect = rng.uniform(0.45, 1.0)
        return ellipse(size, center, (radius, radius * aspect), rng.uniform(0, math.pi))
    if kind == "polygon":
        return polygon(size, rng, center, radius)
    if kind == "blob":
        return blob(size, rng, center, radius)
    if kind == "thin":
        return thin(size, rng, center, radius)
    raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPE_KINDS}")


def regular_polygon(
    size: int, center: tuple[float, float], radii: Sequence[float], angle: float
) -> np.ndarray:
    """(size, size) bool polygon whose vertices lie at ``radii[i]`` from ``center``, evenly spaced in angle
    starting at ``angle`` (3 equal radii: a triangle; 10 alternating radii: a five-pointed star)."""
    count = len(radii)
    points = [
        (center[0] + r * math.cos(angle + 2 * math.pi * i / count), center[1] + r * math.sin(angle + 2 * math.pi * i / count))
        for i, r in enumerate(radii)
    ]
    canvas = Image.new("1", (size, size), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    return np.array(canvas, dtype=bool)


def rectangle(size: int, center: tuple[float, float], half_sides: tuple[float, float], angle: float) -> np.ndarray:
    """(size, size) bool rectangle with half side lengths ``half_sides`` rotated by ``angle`` radians."""
    xs, ys = _grid(size)
    dx, dy = xs - center[0], ys - center[1]
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    return (np.abs(u) <= half_sides[0]) & (np.abs(v) <= half_sides[1])


def annulus(size: int, center: tuple[float, float], outer: float, inner: float) -> np.ndarray:
    """(size, size) bool ring between radii ``inner`` and ``outer``."""
    xs, ys = _grid(size)
    distance = np.hypot(xs - center[0], ys - center[1])
    return (distance <= outer) & (distance >= inner)


def stroke(size: int, rng: np.random.Generator, center: tuple[float, float], radius: float, width: int) -> np.ndarray:
    """(size, size) bool open curved stroke ``width`` pixels wide spanning about 2 * ``radius``."""
    canvas = Image.new("1", (size, size), 0)
    start = rng.uniform(0, 2 * math.pi)
    steps = np.linspace(-1, 1, 24)
    bend = rng.uniform(-0.5, 0.5) * radius
    direction = np.array([math.cos(start), math.sin(start)])
    normal = np.array([-direction[1], direction[0]])
    points = [
        tuple(np.array(center) + radius * t * direction + bend * (1 - t * t) * normal) for t in steps
    ]
    ImageDraw.Draw(canvas).line(points, fill=1, width=width, joint="curve")
    return np.array(canvas, dtype=bool)
