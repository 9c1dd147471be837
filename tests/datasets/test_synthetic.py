"""The synthetic scenes (promptseg/data/synthetic.py)."""

from __future__ import annotations

import numpy as np


def test_scenes_without_objects_are_valid():
    from promptseg.data.synthetic import _drop_small

    scene = _drop_small(np.zeros((8, 8, 3), np.uint8), np.zeros((0, 8, 8), bool), np.zeros(0, np.int64), (), 1.0)
    assert scene.masks.shape == (0, 8, 8)
    assert scene.first_clicks().shape == (0, 2)
