"""Registration of the fake (meta) implementations of the ``torch.ops.promptseg`` kernels.

torch.compile, FakeTensor tracing and meta tensors run an op's fake implementation to learn the
shapes and dtypes of its outputs without running the kernel. Each op module defines its fake beside
its reference and decorates it with :func:`register_fake_if_built`. The registration call itself is
made from this module, the one that the extension's ``m.set_python_module`` names
(csrc/module.cpp): torch checks that a C++ op's fake is registered from the module its library names.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

from promptseg.ops.dispatch import op_built

Fake = TypeVar("Fake", bound=Callable[..., object])


def register_fake_if_built(op_name: str) -> Callable[[Fake], Fake]:
    """Decorator: register the function as the fake of ``promptseg::<op_name>`` when the extension
    registered that op (without the extension there is nothing to register it for).

    The function takes the op's arguments and returns empty tensors of the op's output shapes and
    dtypes; it is returned unchanged either way.
    """

    def register(fake: Fake) -> Fake:
        if op_built(op_name):
            torch.library.register_fake(f"promptseg::{op_name}")(fake)
        return fake

    return register
