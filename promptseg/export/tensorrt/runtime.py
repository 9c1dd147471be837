"""Importing TensorRT on demand, and running a deserialised engine on torch CUDA tensors."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import torch

MIN_TENSORRT_MAJOR = 10
INSTALL_HINT = (
    "install TensorRT >= 10 for your CUDA version (e.g. `pip install tensorrt-cu12`) on a machine with an NVIDIA GPU"
)


class TensorRTUnavailableError(ImportError):
    """TensorRT (>= 10) cannot be imported, or there is no CUDA GPU to run it on."""


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module; raises :class:`TensorRTUnavailableError` naming what is missing."""
    try:
        tensorrt = importlib.import_module("tensorrt")
    except ImportError as error:
        raise TensorRTUnavailableError(
            f"TensorRT is not installed: `import tensorrt` failed ({error}); {INSTALL_HINT}"
        ) from error
    version = getattr(tensorrt, "__version__", "0")
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < MIN_TENSORRT_MAJOR:
        raise TensorRTUnavailableError(f"TensorRT >= {MIN_TENSORRT_MAJOR} is needed, found {version}; {INSTALL_HINT}")
    if not torch.cuda.is_available():
        raise TensorRTUnavailableError("TensorRT engines need a CUDA GPU; torch.cuda.is_available() is False")
    return tensorrt


def torch_dtype(tensorrt: ModuleType, data_type: Any) -> torch.dtype:
    """The torch dtype of a ``tensorrt.DataType``."""
    names = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
    }
    for name, dtype in names.items():
        if hasattr(tensorrt.DataType, name) and data_type == getattr(tensorrt.DataType, name):
            return dtype
    raise TypeError(f"no torch dtype for TensorRT data type {data_type}")


class TensorRTEngine:
    """A serialised engine loaded onto a CUDA device, called with and returning torch tensors."""

    def __init__(self, engine_file: Path, device: torch.device) -> None:
        """
        Args:
            engine_file: a file written by ``promptseg.export.tensorrt.build_sam_engines``.
            device: the CUDA device to run on.
        """
        tensorrt = import_tensorrt()
        self.device = torch.device(device)
        self._logger = tensorrt.Logger(tensorrt.Logger.WARNING)
        self._runtime = tensorrt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(Path(engine_file).read_bytes())
            if self.engine is None:
                raise RuntimeError(f"TensorRT could not deserialise {engine_file} (built with another version or GPU?)")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(index) for index in range(self.engine.num_io_tensors)]
        is_input = {name: self.engine.get_tensor_mode(name) == tensorrt.TensorIOMode.INPUT for name in names}
        self.input_names = [name for name in names if is_input[name]]
        self.output_names = [name for name in names if not is_input[name]]
        self.dtypes = {name: torch_dtype(tensorrt, self.engine.get_tensor_dtype(name)) for name in names}

    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the engine on ``inputs`` (one tensor per input name, any device/dtype); outputs by name.

        Inputs are converted to the engine's dtypes on its device; the caller's tensors are not modified.
        """
        if set(inputs) != set(self.input_names):
            raise ValueError(f"the engine takes inputs {sorted(self.input_names)}, got {sorted(inputs)}")
        staged = {}
        for name in self.input_names:
            tensor = inputs[name].to(device=self.device, dtype=self.dtypes[name]).contiguous()
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise ValueError(
                    f"input {name!r} of shape {tuple(tensor.shape)} is outside the engine's profile "
                    f"{self.engine.get_tensor_profile_shape(name, 0)} (min, opt, max); rebuild with larger EngineLimits"
                )
            self.context.set_tensor_address(name, tensor.data_ptr())
            staged[name] = tensor
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT failed to run the engine; see the TensorRT log above")
        stream.synchronize()
        return outputs
