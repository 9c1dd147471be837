"""ONNX Runtime behind the seams: :class:`OnnxRuntimeEngine` runs one exported graph (the ``Engine`` of
``EngineImageEncoder`` and ``EngineDecoder``), :class:`OnnxRuntimeImageEncoder` is the image encoder
that runs promptseg's exported encoder graph on the CPU.

``onnxruntime`` is imported only when a session is made.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch

from promptseg.encoders.engine import EngineImageEncoder
from promptseg.modeling import Sam

PathLike = Union[str, "os.PathLike[str]"]

_ONNX_RUNTIME_TYPES = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(bool)": torch.bool,
    "tensor(uint8)": torch.uint8,
}


class OnnxRuntimeEngine:
    """An ``onnxruntime.InferenceSession`` called with and returning torch tensors (on the CPU).

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        threads: intra-op threads of the session (0: ONNX Runtime's default, one per physical core).
    """

    def __init__(
        self,
        onnx_path: PathLike,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: Optional[int] = None,
    ) -> None:
        """
        Args:
            onnx_path: the graph (its external data, if any, beside it).
            providers: ONNX Runtime execution providers, in order of preference.
            threads: intra-op threads; None takes ``torch.get_num_threads()``, so that both engines
                of a process use the same cores.
        """
        import onnxruntime

        options = onnxruntime.SessionOptions()
        self.threads = torch.get_num_threads() if threads is None else threads
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # After a run ONNX Runtime's pool threads spin by default, on the cores torch's threads want
        # next (the mask resizes, the next op): measured on a click of the bundled model with
        # 2 threads, 112 ms spinning against 76 ms not (benchmarks/NOTES.md, CPU).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=list(providers))
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


class OnnxRuntimeImageEncoder(EngineImageEncoder):
    """The image encoder of a model, exported (``promptseg.export.export_onnx_encoder``) and run by ONNX
    Runtime on the CPU; preprocessing as ``Sam.preprocess``. Float32 in, float32 embeddings out.

    Attributes:
        precision: ``fp32`` (the exported graph: the model's embeddings to float32 rounding) or
            ``int8`` (its dynamically quantised copy; see ``docs/cpu.md`` for its measured accuracy).
        onnx_path: the graph it runs.
    """

    def __init__(
        self, model: Sam, onnx_path: PathLike, precision: str = "fp32", threads: Optional[int] = None
    ) -> None:
        """
        Args:
            model: the model the graph was exported from (its input size and normalisation).
            onnx_path: the encoder graph (input ``images``, output ``image_embeddings``).
            precision: ``fp32`` or ``int8``, what the graph computes in (a label: the graph decides).
            threads: intra-op threads (see :class:`OnnxRuntimeEngine`).
        """
        if precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be 'fp32' or 'int8', got {precision!r}")
        engine = OnnxRuntimeEngine(onnx_path, threads=threads)
        super().__init__(
            engine, model.image_encoder.img_size, max_images=1, pixel_mean=model.pixel_mean,
            pixel_std=model.pixel_std, dtype=torch.float32,
        )
        self.precision = precision
        self.onnx_path = os.fspath(onnx_path)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.precision}, img_size={self.img_size}, device={self.device}, "
            f"threads={self.engine.threads})"
        )
