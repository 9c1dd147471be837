"""Windowed attention blocks on grids that need padding (``partition_windows`` / ``unpartition_windows``)
against the official block."""

from __future__ import annotations

import pytest
import torch

from promptseg.modeling.image_encoder import Block
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
