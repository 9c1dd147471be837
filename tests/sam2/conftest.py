"""Fixtures of the SAM 2 tests."""

from __future__ import annotations

import pytest

from tests.sam2._support import sam2_pair


@pytest.fixture(scope="session")
def sam2_tiny_pair():
    """(official, promptseg) SAM 2.1 Hiera-t models with the same random weights (CPU, fp32)."""
    return sam2_pair("t", seed=0)
