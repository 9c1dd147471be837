"""promptseg.masks.depth_map and deepest_points against the definition, pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptseg.masks import deepest_points, depth_map


def chessboard_depth(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) int32 by brute force: min over the pixels outside the mask (and the
    ring just outside the image) of max(|dy|, |dx|); 0 outside the mask."""
    height, width = mask.shape
    framed = np.zeros((height + 2, width + 2), dtype=bool)
    framed[1:-1, 1:-1] = mask
    outside = np.argwhere(~framed) - 1  # (N, 2) (y, x) in image coordinates
    ys, xs = np.mgrid[:height, :width]
    distance = np.maximum(np.abs(ys[..., None] - outside[:, 0]), np.abs(xs[..., None] - outside[:, 1])).min(-1)
    return np.where(mask, distance, 0).astype(np.int32)


@pytest.mark.parametrize("shape", [(1, 1), (9, 13), (24, 17)])
def test_depth_map_is_the_chessboard_distance_to_the_outside(shape):
    generator = torch.Generator().manual_seed(sum(shape))
    masks = [torch.rand(shape, generator=generator) > fraction for fraction in (0.05, 0.3, 0.7)]
    masks += [torch.ones(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)]
    blob = torch.zeros(shape, dtype=torch.bool)
    blob[shape[0] // 4 : shape[0] - 1, 1 : shape[1] // 2 + 1] = True  # a rectangle clear of the right and bottom borders
    masks.append(blob)
    stacked = torch.stack(masks)
    depth = depth_map(stacked)
    assert depth.dtype == torch.int32 and depth.shape == stacked.shape
    for index, mask in enumerate(masks):
        np.testing.assert_array_equal(depth[index].numpy(), chessboard_depth(mask.numpy()), err_msg=f"mask {index}")


def test_depth_map_of_no_masks():
    assert depth_map(torch.zeros((0, 5, 7), dtype=torch.bool)).shape == (0, 5, 7)


def test_deepest_points_take_the_first_deepest_pixel_in_raster_order():
    masks = torch.zeros((3, 8, 10), dtype=torch.bool)
    masks[0, 1:6, 2:9] = True  # depth 3 on row 3, columns 4..6: the first is (4, 3)
    masks[1, 7, 9] = True  # a corner pixel
    points = deepest_points(masks)
    assert points.tolist() == [[4.0, 3.0], [9.0, 7.0], [0.0, 0.0]]  # an empty mask gives (0, 0)
    assert int(depth_map(masks)[0].max()) == 3
