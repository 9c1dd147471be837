"""``rel_pos_table``: the relative-position tables resized as the official ``get_rel_pos`` does."""

from __future__ import annotations

import pytest
import torch

from promptseg.ops import rel_pos_table
from tests._support import OFFICIAL_MISSING

official_encoder = pytest.importorskip("segment_anything.modeling.image_encoder", reason=OFFICIAL_MISSING)


def test_rel_pos_tables_are_interpolated_like_official():
    """An encoder run at another input size resizes the tables as the official get_rel_pos does."""
    torch.manual_seed(0)
    table = torch.randn(27, 8)
    for q_size, k_size in ((14, 14), (20, 20), (7, 7), (9, 13)):
        expected = official_encoder.get_rel_pos(q_size, k_size, table)
        assert torch.allclose(rel_pos_table(q_size, k_size, table), expected)
