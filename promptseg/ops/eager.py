"""Whether an op call runs eagerly, and so may take a CPU path of its own.

The CPU paths (``promptseg.ops.cpu_*``, the folded attentions, the GEMM output head, the tiled
post-processing, the uint8 bool reductions) rearrange the arithmetic for speed. A trace must record
the reference's graph instead: an ONNX export (TorchScript tracing) and ``torch.compile``, which
optimise a graph of their own, and TorchScript scripting.
"""

from __future__ import annotations

from typing import Optional

import torch

from promptseg.ops.cpu_attention import cpu_attention_applies


def exporting() -> bool:
    """Whether a TorchScript trace (``torch.onnx.export``'s exporter) is recording this call."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def tracing() -> bool:
    """Whether this call is recorded rather than run: an export (:func:`exporting`), TorchScript
    scripting or ``torch.compile``."""
    return exporting() or torch.jit.is_scripting() or torch.compiler.is_compiling()


def cpu_float32_eager(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether a float32 CPU path may run on these inputs: float32 on the CPU, no gradient wanted
    (training keeps the reference, whose backward is the official one), and not :func:`tracing`."""
    return not tracing() and cpu_attention_applies(*tensors)
