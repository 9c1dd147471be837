"""Fixtures of the SAM 2 tests."""

from __future__ import annotations

import pytest

from tests.sam2._support import sam2_pair


@pytest.fixture(scope="session")
def sam2_tiny_pair():
    """(official, promptseg) SAM 2.1 Hiera-t models with the same random weights (CPU, fp32)."""
    return sam2_pair("t", seed=0)


@pytest.fixture(scope="session")
def sam2_small():
    """A promptseg SAM 2.1 Hiera-t with random weights at a 256 x 256 input (the code paths of 1024,
    16x cheaper): embedding 16 x 16, high-res levels 64 x 64 and 32 x 32, mask inputs 64 x 64."""
    import torch

    from promptseg.sam2 import build_sam2

    torch.manual_seed(0)
    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu", hydra_overrides_extra=["model.image_size=256"])
