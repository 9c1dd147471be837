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


def quantize_encoder_int8(source: PathLike, target: PathLike) -> None:
    """Write to ``target`` the image encoder graph ``source`` with dynamically quantised 8-bit matmuls.

    ``onnxruntime.quantization.quantize_dynamic`` on the MatMul nodes that have weights (qkv, proj and
    the MLP; the attention's products of activations stay float32, as do the convolutions of the
    patch embedding and the neck): unsigned 8-bit weights per output channel with ``reduce_range``
    (7-bit), activations quantised per call. Of the settings tried with the bundled model
    (``docs/cpu.md``, int8), this one agreed best with float32 while quantising every weight MatMul:
    mean mask IoU on the three test photos 0.974, against 0.945 for full-range signed weights
    (likely the int16 saturation of u8 x s8 products on CPUs without VNNI, which reduce_range avoids).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, target = Path(source), Path(target)
    external_data_path(target).unlink(missing_ok=True)
    quantize_dynamic(
        model_input=source,
        model_output=target,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QUInt8,
        use_external_data_format=external_data_path(source).exists(),
    )
