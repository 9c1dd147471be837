"""Fixtures of the decoder tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def kernel_routes(monkeypatch):
    """The kernels opted in (``PROMPTSEG_KERNELS=1``: by default they are opt-in until a GPU record verifies
    them) and every decoder-attention dispatch recorded: a list that fills with (op name, whether a
    kernel was chosen)."""
    import promptseg.ops
    from promptseg.ops import decoder_attention

    monkeypatch.setenv(promptseg.ops.KERNELS_ENV, "1")
    routed = []
    original = decoder_attention.kernel_for

    def spy(op_name, *tensors, backend="auto"):
        kernel = original(op_name, *tensors, backend=backend)
        routed.append((op_name, kernel is not None))
        return kernel

    monkeypatch.setattr(decoder_attention, "kernel_for", spy)
    return routed
