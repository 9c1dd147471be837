"""Dynamic int8 quantisation of an exported graph, with the official export script's settings."""

from __future__ import annotations

from pathlib import Path

from promptseg.export.onnx_common import PathLike, external_data_path


def quantize_onnx(source: PathLike, target: PathLike) -> None:
    """Write to ``target`` the dynamically quantised ``source`` graph (needs ``onnxruntime``).

    As the official ``--quantize-out``: ``onnxruntime.quantization.quantize_dynamic``
    with unsigned 8-bit weights, per-tensor, full range. A source whose weights
    are in external data keeps them external in the target.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, target = Path(source), Path(target)
    external_data_path(target).unlink(missing_ok=True)
    quantize_dynamic(
        model_input=source,
        model_output=target,
        per_channel=False,
        reduce_range=False,
        weight_type=QuantType.QUInt8,
        use_external_data_format=external_data_path(source).exists(),
    )
