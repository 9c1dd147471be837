"""Polygons from clients, checked, bounded and clipped to the image before anything rasterises them.

pycocotools' polygon rasteriser trusts its input: it allocates memory for every point along every edge
(five per pixel of length) without checking that it got it, so one triangle with a vertex at 4e8 asked
for about 24 GB and killed the server with SIGSEGV. Here a polygon is refused (400) unless:

- it is a non-empty list of rings ``[x0, y0, x1, y1, ...]`` with at least 3 vertices each, at most
  :data:`MAX_VERTICES` vertices in all, of finite numbers;
- every coordinate lies within :data:`MAX_COORDINATE` pixels of the origin (far beyond any image the
  pixel limit lets in; within it the clipping below is exact in float64);

and then every ring is clipped to the image rectangle ``[0, W] x [0, H]`` (Sutherland-Hodgman: the part
of the ring inside the image, which is what any rasteriser would fill there), rings left with no area
inside are dropped, and the clipped outline must be at most :data:`MAX_OUTLINE` pixels long (the
rasteriser's cost). Rings already inside the image are passed on unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from promptseg.annotate.errors import bad_request

MAX_VERTICES = 50_000
MAX_COORDINATE = 2.0**24  # 16,777,216 pixels
MAX_OUTLINE = 500_000  # pixels of edge length (the longer side of each edge), all rings together


def checked_polygon(value: Any, height: int, width: int) -> list[np.ndarray]:
    """A client's polygon as rings clipped to an H x W image.

    Args:
        value: a list of flat rings ``[x0, y0, x1, y1, ...]`` in image pixels.
    Returns:
        A list of (K, 2) float64 (x, y) rings inside ``[0, W] x [0, H]`` (possibly empty: no part of
        the polygon is inside the image).
    Raises:
        ApiError: 400 naming the problem (see the module).
    """
    if not isinstance(value, list) or not value:
        raise bad_request(f"polygon must be a non-empty list of [x0, y0, x1, y1, ...] rings, got {_describe(value)}")
    if not all(isinstance(ring, list) for ring in value):
        index = next(k for k, ring in enumerate(value) if not isinstance(ring, list))
        raise bad_request(f"polygon ring {index} must be a list [x0, y0, x1, y1, ...], got {_describe(value[index])}")
    vertices = sum(len(ring) for ring in value) // 2
    if vertices > MAX_VERTICES:
        raise bad_request(f"a polygon may have at most {MAX_VERTICES} vertices in all, got {vertices}")
    rings = []
    for index, ring in enumerate(value):
        if len(ring) < 6 or len(ring) % 2:
            raise bad_request(f"polygon ring {index} must list at least 3 (x, y) pairs as [x0, y0, x1, y1, ...]")
        if not all(_is_number(v) for v in ring):
            raise bad_request(f"polygon ring {index} must hold finite numbers")
        far = max(abs(v) for v in ring)
        if far > MAX_COORDINATE:
            raise bad_request(
                f"polygon ring {index} has a coordinate of {_magnitude(far)} pixels; coordinates must lie within "
                f"±{MAX_COORDINATE:.0f} (the image is {width} x {height}; parts outside it are clipped)"
            )
        points = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
        clipped = clip_ring(points, width, height)
        if len(clipped) >= 3:
            rings.append(clipped)
    length = sum(outline_length(ring) for ring in rings)
    if length > MAX_OUTLINE:
        raise bad_request(f"the polygon's outline inside the image is {length:.0f} pixels long; at most {MAX_OUTLINE}")
    return rings


def clip_ring(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """(K, 2) float64: the (N, 2) ring ``points`` clipped to ``[0, width] x [0, height]``
    (Sutherland-Hodgman against each side in turn); ``points`` itself when it lies inside."""
    inside = (points[:, 0] >= 0) & (points[:, 0] <= width) & (points[:, 1] >= 0) & (points[:, 1] <= height)
    if inside.all():
        return points
    for axis, bound, keep_below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False), (1, float(height), True)):
        if len(points) == 0:
            break
        points = _clip_side(points, axis, bound, keep_below)
    return points


def outline_length(ring: np.ndarray) -> float:
    """The sum over the (K, 2) ring's closed edges of max(|dx|, |dy|) (what pycocotools walks)."""
    steps = np.abs(np.roll(ring, -1, axis=0) - ring)
    return float(steps.max(axis=1).sum())


def _clip_side(points: np.ndarray, axis: int, bound: float, keep_below: bool) -> np.ndarray:
    """The (N, 2) ring cut by the line ``coordinate[axis] = bound``, keeping the side ``<= bound``
    (``keep_below``) or ``>= bound``: each vertex kept if inside, and a crossing point added on each
    edge that crosses the line."""
    following = np.roll(points, -1, axis=0)
    values, next_values = points[:, axis], following[:, axis]
    inside = values <= bound if keep_below else values >= bound
    next_inside = next_values <= bound if keep_below else next_values >= bound
    crossing = inside != next_inside
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(crossing, (bound - values) / np.where(crossing, next_values - values, 1.0), 0.0)
    crossings = points + t[:, None] * (following - points)
    crossings[:, axis] = bound
    candidates = np.stack([points, crossings], axis=1).reshape(-1, 2)
    keep = np.stack([inside, crossing], axis=1).reshape(-1)
    return candidates[keep]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _magnitude(value: float) -> str:
    """A number for a message (an integer too large for str() or float() by its size)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"about 2^{value.bit_length()}"
    return f"{value:g}"


def _describe(value: Any) -> str:
    """A short description of a client's value (containers by their length, never printed whole)."""
    if isinstance(value, (list, dict)):
        return f"a {'list' if isinstance(value, list) else 'JSON object'} of {len(value)} item(s)"
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
