"""Fixtures shared by the test suite."""

from __future__ import annotations

import pytest
import torch

from tests._support import IMAGE_NAMES, TINY, load_image, model_pair


@pytest.fixture(scope="session")
def images() -> dict:
    """The three test photos as (H, W, 3) uint8 RGB arrays, by file name."""
    return {name: load_image(name) for name in IMAGE_NAMES}


@pytest.fixture(scope="session")
def tiny_pair():
    """(official, promptseg) tiny SAMs with the same random weights."""
    return model_pair(TINY, seed=1)


@pytest.fixture(scope="session")
def vit_b_pair():
    """(official, promptseg) vit_b SAMs with the same random weights."""
    from promptseg.configs import VIT_B

    return model_pair(VIT_B, seed=2)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
