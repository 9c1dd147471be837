"""Windowed attention blocks on grids that need padding (``partition_windows`` / ``unpartition_windows``)
against the official block; the eager one-copy partitioning against the traceable form."""

from __future__ import annotations

import pytest
import torch

from promptseg.modeling.image_encoder import Block
from promptseg.ops import windows as window_ops
from tests._support import OFFICIAL_MISSING, randomize_, relative_error

official_encoder = pytest.importorskip("segment_anything.modeling.image_encoder", reason=OFFICIAL_MISSING)


@pytest.mark.parametrize("height, width, window", [(20, 23, 7), (14, 14, 14), (64, 64, 14), (5, 3, 4)])
def test_block_matches_official_with_window_padding(height, width, window):
    """Windowed blocks on grids that need padding behave as the official partition/pad/unpartition."""
    torch.manual_seed(height + width)
    dim, heads = 48, 3
    official = official_encoder.Block(dim, heads, use_rel_pos=True, window_size=window, input_size=(height, width))
    randomize_(official)
    ours = Block(dim, heads, use_rel_pos=True, window_size=window, input_size=(height, width))
    ours.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(2, height, width, dim)
    with torch.no_grad():
        assert relative_error(ours(x), official(x)) < 1e-5


@pytest.mark.parametrize("size, window", [((16, 16), 7), ((14, 14), 7), ((13, 20), 6), ((5, 3), 8)])
@pytest.mark.parametrize("pad_value", [False, True])
def test_window_partitioning_equals_the_traceable_form(size, window, pad_value):
    height, width = size
    x = torch.randn(2, height, width, 5)
    value = torch.randn(5) if pad_value else None
    windows, padded = window_ops.partition_windows(x, window, value)
    expected, expected_padded = window_ops._partition_traceable(x, window, value)
    assert padded == expected_padded and torch.equal(windows, expected)
    grid = window_ops.unpartition_windows(windows, window, padded, size)
    assert torch.equal(grid, x) and grid.is_contiguous()
    assert torch.equal(grid, window_ops._unpartition_traceable(windows, window, padded, size))
    transposed = x.transpose(1, 2)  # a non-contiguous grid
    assert torch.equal(window_ops.partition_windows(transposed, window)[0], window_ops._partition_traceable(transposed, window, None)[0])


def test_window_partitioning_passes_gradients():
    x = torch.randn(1, 13, 20, 4, requires_grad=True)
    value = torch.randn(4, requires_grad=True)
    windows, padded = window_ops.partition_windows(x, 6, value)
    window_ops.unpartition_windows(2 * windows, 6, padded, (13, 20)).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0)) and torch.equal(value.grad, torch.zeros(4))
    windows, _ = window_ops.partition_windows(x, 6, value)
    value.grad = None
    windows.sum().backward()
    assert torch.equal(value.grad, torch.full((4,), 18 * 24 - 13 * 20.0))
