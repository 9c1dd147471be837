"""Shared machinery of the ONNX exports: the exporter call, the 2 GB protobuf limit, I/O descriptions.

Every graph is traced with PyTorch's TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``): it needs no extra package and
handles the dynamic axes SAM's deployments rely on.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from promptseg.modeling import Sam
from promptseg.modeling.common import LayerNorm2d
from promptseg.ops import layer_norm_fp32

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_OPSET = 17
"""The official export script's default; the first opset with a LayerNormalization op."""
MIN_OPSET = 17
MAX_OPSET = 20
PROTOBUF_LIMIT_BYTES = 2**31
"""A serialised ONNX protobuf must stay below 2 GiB; larger weights go to an external data file."""
EXPORT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_opset(opset: int) -> None:
    """Raise ValueError unless ``opset`` is one the exports support (17..20)."""
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be an int in [{MIN_OPSET}, {MAX_OPSET}], got {opset!r}")


def check_export_dtype(dtype: torch.dtype) -> None:
    """Raise TypeError unless ``dtype`` is float32, float16 or bfloat16."""
    if dtype not in EXPORT_DTYPES:
        raise TypeError(f"dtype must be one of {[str(d) for d in EXPORT_DTYPES]}, got {dtype!r}")


class ExportableLayerNorm2d(nn.Module):
    """``LayerNorm2d`` with its normalised shape taken from the weight, not read off the input.

    The model's version reads the channel count from ``x.shape[1]``, which the
    tracer records as a dynamic value that LayerNormalization cannot take.
    """

    def __init__(self, norm: LayerNorm2d) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), statistics over C in float32."""
        norm = self.norm
        channels_last = x.permute(0, 2, 3, 1)
        normed = layer_norm_fp32(channels_last, tuple(norm.weight.shape), norm.weight, norm.bias, norm.eps)
        return normed.permute(0, 3, 1, 2)


class Float32Convolution(nn.Module):
    """A convolution kept in float32 inside a bfloat16 graph: ONNX's Conv and ConvTranspose have no
    bfloat16 type. Input is cast to float32, output back to the input dtype."""

    def __init__(self, convolution: Union[nn.Conv2d, nn.ConvTranspose2d]) -> None:
        super().__init__()
        self.convolution = convolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolution(x.float()).to(x.dtype)


def exportable_copy(model: Sam, dtype: torch.dtype = torch.float32) -> Sam:
    """A copy of ``model`` in ``dtype`` and eval mode, on the model's device, ready to trace.

    Every ``LayerNorm2d`` becomes an :class:`ExportableLayerNorm2d`; for
    bfloat16, every convolution becomes a :class:`Float32Convolution` holding
    the original float32 weights. The caller's model is not modified.
    """
    check_export_dtype(dtype)
    copied = copy.deepcopy(model).to(dtype=dtype).eval()
    for name, module in list(copied.named_modules()):
        replacement: Optional[nn.Module] = None
        if isinstance(module, LayerNorm2d):
            replacement = ExportableLayerNorm2d(module)
        elif dtype == torch.bfloat16 and isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            replacement = Float32Convolution(copy.deepcopy(model.get_submodule(name)).float())
        if replacement is not None:
            parent_name, _, child_name = name.rpartition(".")
            setattr(copied.get_submodule(parent_name), child_name, replacement)
    return copied


def resized_size(size: torch.Tensor, side: int) -> torch.Tensor:
    """(2,) int64 (H, W) -> (2,) int64 (h, w) scaled so that the longest side is ``side``, rounded half up.

    ``ResizeLongestSide.get_preprocess_shape`` in exact integer arithmetic, as graph ops.
    """
    longest = size.max()
    return (2 * size * side + longest) // (2 * longest)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (where the export traces)."""
    return next(model.parameters()).device


def export_module(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: PathLike,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    opset: int,
    output_shapes: Optional[Mapping[str, Sequence[Union[int, str]]]] = None,
) -> Path:
    """Trace ``module`` on ``example_inputs`` and write the ONNX graph to ``path``.

    ``output_shapes`` declares outputs' shapes (int: fixed, str: named dynamic dim)
    where the exporter cannot follow them (it names such dims like
    ``Castimage_embeddings_dim_2``, which would read as dynamic).

    Weights that would push the protobuf past 2 GiB are written to one
    external data file, ``<path>.data``, next to the graph (ONNX Runtime and
    TensorRT's parser find it there). Returns ``path`` as a Path.
    """
    import onnx

    check_opset(opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # For a model over 2 GiB the exporter writes one file per weight; trace into a
    # scratch folder and re-save as a single graph (+ one data file).
    with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as scratch:
        traced_path = Path(scratch) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about every Python int it reads off a shape (the
            # dynamic-axes tests verify the graphs), and the TorchScript exporter
            # announces its deprecation (see docs/export.md).
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example_inputs,
                str(traced_path),
                dynamo=False,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes={name: dict(axes) for name, axes in dynamic_axes.items()},
                do_constant_folding=True,
            )
        model = onnx.load(str(traced_path))
        for output in model.graph.output:
            if output_shapes and output.name in output_shapes:
                _declare_shape(output, output_shapes[output.name])
        save_onnx(model, path)
    return path


def _declare_shape(value: Any, shape: Sequence[Union[int, str]]) -> None:
    """Set the declared shape of a graph input/output: an int is a fixed dim, a str a named dynamic dim."""
    dims = value.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ValueError(f"{value.name} has rank {len(dims)}; cannot declare the shape {list(shape)}")
    for dim, size in zip(dims, shape):
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size


def save_onnx(model: Any, path: PathLike) -> list[Path]:
    """Write an ``onnx.ModelProto`` to ``path``; weights go to ``<path>.data`` when the graph would exceed 2 GiB.

    Returns the files written (the graph, then the data file if any).
    """
    import onnx

    path = Path(path)
    data_path = external_data_path(path)
    data_path.unlink(missing_ok=True)  # onnx appends to an existing data file
    if initializer_bytes(model) < PROTOBUF_LIMIT_BYTES - (64 << 20):
        onnx.save_model(model, str(path))
        return [path]
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data_path.name)
    return [path, data_path]


def external_data_path(path: PathLike) -> Path:
    """``<path>.data``: where :func:`save_onnx` puts the weights of a graph over 2 GiB."""
    path = Path(path)
    return path.with_name(path.name + ".data")


def initializer_bytes(model: Any) -> int:
    """Bytes of all weights (initializers) of an ``onnx.ModelProto``, wherever they are stored."""
    import onnx

    total = 0
    for tensor in model.graph.initializer:
        count = 1
        for dim in tensor.dims:
            count *= dim
        total += count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return total


def describe_onnx(path: PathLike) -> dict[str, Any]:
    """Names, shapes and dtypes of an ONNX file's inputs and outputs, without loading its weights.

    Returns ``{"file", "opset", "inputs": [...], "outputs": [...], "external_data"}``; each
    input/output is ``{"name", "shape", "dtype"}`` where a dynamic dim is its name (a str)
    and a fixed dim an int; ``external_data`` is the data file's name or None.
    """
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    data_path = external_data_path(path)
    return {
        "file": path.name,
        "opset": next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")),
        "inputs": [_describe_value(value) for value in model.graph.input],
        "outputs": [_describe_value(value) for value in model.graph.output],
        "external_data": data_path.name if data_path.exists() else None,
    }


def _describe_value(value: Any) -> dict[str, Any]:
    import onnx

    tensor_type = value.type.tensor_type
    shape = [dim.dim_param if dim.HasField("dim_param") else dim.dim_value for dim in tensor_type.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    return {"name": value.name, "shape": shape, "dtype": str(dtype)}
