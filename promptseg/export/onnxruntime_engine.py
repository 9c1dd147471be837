"""Running an exported graph with ONNX Runtime, behind the ``Engine`` interface of ``EnginePredictor``."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from promptseg.export.onnx_common import PathLike

_ONNX_RUNTIME_TYPES = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(bool)": torch.bool,
    "tensor(uint8)": torch.uint8,
}


class OnnxRuntimeEngine:
    """An ``onnxruntime.InferenceSession`` called with and returning torch tensors (on the CPU)."""

    def __init__(self, onnx_path: PathLike, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(onnx_path), providers=list(providers))
        self.device = torch.device("cpu")
        self.input_dtypes = {value.name: _ONNX_RUNTIME_TYPES[value.type] for value in self.session.get_inputs()}
        self.output_names = [value.name for value in self.session.get_outputs()]

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the graph on ``inputs`` (one tensor per input name, converted to its dtype); outputs by name."""
        if set(inputs) != set(self.input_dtypes):
            raise ValueError(f"the graph takes inputs {sorted(self.input_dtypes)}, got {sorted(inputs)}")
        feeds = {
            name: np.ascontiguousarray(inputs[name].detach().to(device="cpu", dtype=dtype).numpy())
            for name, dtype in self.input_dtypes.items()
        }
        outputs = self.session.run(self.output_names, feeds)
        return {name: torch.from_numpy(output) for name, output in zip(self.output_names, outputs)}
