"""Masks to polygons and back, with OpenCV's contour tools.

Coordinates are COCO's: continuous pixels, where pixel (x, y) is the square [x, x+1) x [y, y+1), so
a polygon along a mask's pixel edges rasterises back to exactly that mask (pycocotools does so).

The contours come from :func:`cv2.findContours` (``RETR_CCOMP``: outer boundaries and their holes)
run on the mask's *edge lattice*: the mask doubled in size with a point for every pixel centre, pixel
edge and pixel corner, each set when a pixel of the mask touches it. Its contour points lie on the
mask's pixel edges (halved, they are the polygon's vertices), so at ``tolerance=0`` the polygon is
exact. ``tolerance`` (pixels) is the largest distance :func:`cv2.approxPolyDP` may move the boundary
when it drops vertices.

Holes: :func:`mask_rings` gives them as rings of their own; :func:`object_polygons` joins each hole
to its outer ring by a zero-width cut (the ring runs to the hole, around it and back), which COCO
polygons and YOLO-seg lines can hold and which their even-odd (and non-zero) fills leave empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from promptseg.annotate.coco_masks import decode_mask, polygon_rle
from promptseg.errors import optional_module

DEFAULT_TOLERANCE = 0.5  # pixels


def cv2_module():
    """OpenCV, or a clear error naming the package that installs it."""
    return optional_module("cv2", "polygons", 'pip install "promptseg[annotate]" (opencv-python-headless)')


def mask_rings(mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> list[dict[str, Any]]:
    """The polygon rings of an (H, W) bool mask.

    Returns ``[{"points": [x0, y0, x1, y1, ...], "hole": bool, "outer": i}, ...]``: outer rings with
    ``outer`` their own index, each hole after its outer ring with ``outer`` the index of that ring.
    Rings with fewer than 3 vertices after simplification keep their unsimplified contour.
    """
    cv2 = cv2_module()
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    if tolerance < 0 or not np.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number of pixels >= 0, got {tolerance}")
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return []
    x0, y0 = int(xs.min()), int(ys.min())
    crop = np.asarray(mask[y0:ys.max() + 1, x0:xs.max() + 1], dtype=np.uint8)
    lattice = np.zeros((2 * crop.shape[0] + 3, 2 * crop.shape[1] + 3), np.uint8)
    lattice[2:-1:2, 2:-1:2] = crop  # pixel centres; a one-point margin keeps contours off the border
    lattice = cv2.dilate(lattice, np.ones((3, 3), np.uint8))
    contours, hierarchy = cv2.findContours(lattice, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    rings: list[dict[str, Any]] = []
    outer_index: dict[int, int] = {}
    order = [k for k in range(len(contours)) if hierarchy[0][k][3] < 0]
    order += [k for k in range(len(contours)) if hierarchy[0][k][3] >= 0]
    for k in order:
        contour = contours[k]
        simplified = cv2.approxPolyDP(contour, 2 * tolerance, True) if tolerance > 0 else contour
        if len(simplified) < 3:
            simplified = contour
        if len(simplified) < 3:
            continue
        # lattice point (u, v) is the continuous coordinate ((u - 1) / 2, (v - 1) / 2) of the crop
        points = (simplified.reshape(-1, 2).astype(np.float64) - 1) / 2 + (x0, y0)
        parent = int(hierarchy[0][k][3])
        if parent < 0:
            outer_index[k] = len(rings)
            rings.append({"points": _flat(points), "hole": False, "outer": len(rings)})
        elif parent in outer_index:
            rings.append({"points": _flat(points), "hole": True, "outer": outer_index[parent]})
    return rings


def object_polygons(mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> list[list[float]]:
    """One flat ring ``[x0, y0, x1, y1, ...]`` per connected part of an (H, W) bool mask, its holes
    joined in by zero-width cuts (a COCO ``segmentation`` polygon list)."""
    rings = mask_rings(mask, tolerance)
    polygons: list[list[float]] = []
    for index, ring in enumerate(rings):
        if ring["hole"]:
            continue
        merged = np.asarray(ring["points"]).reshape(-1, 2)
        for hole in (r for r in rings if r["hole"] and r["outer"] == index):
            merged = join_rings(merged, np.asarray(hole["points"]).reshape(-1, 2))
        polygons.append(_flat(merged))
    return polygons


def rings_mask(rings: list[list[float]], height: int, width: int) -> np.ndarray:
    """(H, W) bool: the even-odd fill of flat rings (a pixel is in when it lies inside an odd number of
    rings), so holes given as rings of their own are cut out. Rasterised by pycocotools; the rings must
    lie inside the image (a client's polygon is checked and clipped by
    :func:`promptseg.annotate.polygon_input.checked_polygon` first)."""
    arrays = [np.asarray(ring, dtype=np.float64).reshape(-1, 2) for ring in rings]
    return decode_mask(polygon_rle(arrays, height, width, "evenodd"))


def join_rings(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(N + M + 2, 2): one ring through (N, 2) ``first`` and (M, 2) ``second``: ``first`` runs from its
    vertex nearest ``second`` around it and back (a zero-width cut, which an even-odd fill leaves out)."""
    distances = ((first[:, None, :] - second[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(distances)), distances.shape)
    return np.concatenate([first[:i + 1], second[j:], second[:j + 1], first[i:]])


def _flat(points: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in points.reshape(-1)]
