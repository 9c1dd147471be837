"""Edge-map building blocks shared by SAM's edge detector and its classical baseline: Sobel gradient
magnitudes and edge non-maximum suppression (thinning), on the maps' device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Sobel of a unit step between two pixels is 4 (the [1, 2, 1] smoothing sums to 4): dividing by it
# maps a sharp 0 -> 1 probability edge to 1.
SOBEL_STEP = 4.0


def sobel_magnitude(maps: torch.Tensor) -> torch.Tensor:
    """(N, H, W) float maps -> (N, H, W) float32 Sobel gradient magnitudes divided by :data:`SOBEL_STEP`
    (replicated borders, so the image frame itself is not an edge)."""
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {tuple(maps.shape)}")
    smooth = torch.tensor([1.0, 2.0, 1.0], device=maps.device)
    slope = torch.tensor([-1.0, 0.0, 1.0], device=maps.device)
    kernels = torch.stack([torch.outer(smooth, slope), torch.outer(slope, smooth)])[:, None]  # d/dx, d/dy
    padded = F.pad(maps.float()[:, None], (1, 1, 1, 1), mode="replicate")
    gradients = F.conv2d(padded, kernels)
    return gradients.square().sum(1).sqrt() / SOBEL_STEP


def _triangle_smooth(edge: torch.Tensor, radius: int) -> torch.Tensor:
    """(H, W) map convolved with a separable triangle filter of the given radius (replicated borders)."""
    weights = torch.cat([torch.arange(1, radius + 2), torch.arange(radius, 0, -1)]).float().to(edge.device)
    weights = weights / weights.sum()
    padded = F.pad(edge[None, None], (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, weights.view(1, 1, 1, -1))
    return F.conv2d(rows, weights.view(1, 1, -1, 1))[0, 0]


def _gradient(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences (one-sided at the borders) of an (H, W) map along x and y."""
    return torch.gradient(values, dim=1)[0], torch.gradient(values, dim=0)[0]


def edge_orientation(edge: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """(H, W) angle in [0, pi) of each pixel's edge normal, from the second derivatives of the smoothed map."""
    smooth = _triangle_smooth(edge, radius)
    dx, dy = _gradient(smooth)
    dxx, dxy = _gradient(dx)
    _, dyy = _gradient(dy)
    return torch.remainder(torch.atan(dyy * torch.sign(-dxy) / (dxx + 1e-5)), math.pi)


def edge_nms(edge: torch.Tensor, radius: float = 1.0, tolerance: float = 1.01, border: int = 5) -> torch.Tensor:
    """Thin an edge map: keep a pixel only where it is the maximum across the edge.

    Args:
        edge: (H, W) float edge strengths (not modified).
        radius: distance in pixels, along the edge normal, of the two neighbours compared with.
        tolerance: a pixel survives when ``tolerance * value`` is at least both neighbours.
        border: strengths within this many pixels of the frame fade linearly to 0 there.
    Returns:
        (H, W) float32, the surviving strengths and 0 elsewhere.
    """
    if edge.ndim != 2:
        raise ValueError(f"edge must be an (H, W) map, got shape {tuple(edge.shape)}")
    edge = edge.float()
    height, width = edge.shape
    normal = edge_orientation(edge)
    ys, xs = torch.meshgrid(
        torch.arange(height, device=edge.device, dtype=torch.float32),
        torch.arange(width, device=edge.device, dtype=torch.float32),
        indexing="ij",
    )
    thinned = edge.clone()
    for sign in (1.0, -1.0):
        sample_x = xs + sign * radius * torch.cos(normal)
        sample_y = ys + sign * radius * torch.sin(normal)
        grid = torch.stack([2 * sample_x / max(width - 1, 1) - 1, 2 * sample_y / max(height - 1, 1) - 1], dim=-1)
        neighbour = F.grid_sample(edge[None, None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)
        thinned = torch.where(edge * tolerance < neighbour[0, 0], torch.zeros_like(thinned), thinned)
    if border > 0:
        distance = torch.minimum(torch.minimum(xs, width - 1 - xs), torch.minimum(ys, height - 1 - ys))
        thinned = thinned * (distance / border).clamp(max=1.0)
    return thinned
