"""``promptseg export``: ONNX graphs (``export onnx``) and TensorRT engines (``export tensorrt``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from promptseg.cli.common import DTYPES, add_model_arguments, load_model

PRECISIONS = ("fp32", "fp16", "bf16")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="export ONNX graphs or build TensorRT engines")
    targets = export.add_subparsers(dest="target", required=True)

    onnx = targets.add_parser(
        "onnx",
        help="write encoder.onnx, decoder.onnx (official-compatible), decoder_batched.onnx and export.json",
        description="--dtype is the precision of encoder.onnx; LayerNorm and softmax statistics stay float32. "
        "Tracing runs one forward pass: a GPU (--device cuda) is much faster for float16 and bfloat16.",
    )
    add_model_arguments(onnx, engine=False)
    onnx.add_argument("--out", type=Path, required=True, help="output folder")
    onnx.add_argument("--quantize", action="store_true", help="also write uint8-quantised decoders (*_quantized.onnx)")
    onnx.add_argument("--return-single-mask", action="store_true", help="decoder.onnx returns one mask, as officially")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..20 (default 17)")
    onnx.set_defaults(run=run_onnx)

    tensorrt = targets.add_parser(
        "tensorrt",
        help="build and cache TensorRT engines (needs tensorrt >= 10 and a GPU)",
        description="Builds the image encoder and batched decoder engines, or finds them in the cache.",
    )
    add_model_arguments(tensorrt, engine=False)
    tensorrt.add_argument("--precision", default="fp16", choices=PRECISIONS, help="engine precision (default fp16)")
    tensorrt.add_argument(
        "--cache-dir", type=Path, help="engine cache (default $PROMPTSEG_CACHE_DIR or ~/.cache/promptseg/tensorrt)"
    )
    tensorrt.add_argument("--max-images", type=_positive_int, default=4, help="images per encoder call (default 4)")
    tensorrt.add_argument("--max-prompts", type=_positive_int, default=64, help="prompts per decoder call (default 64)")
    tensorrt.add_argument("--max-points", type=_positive_int, default=16, help="tokens per prompt (default 16)")
    tensorrt.set_defaults(run=run_tensorrt)


def _weights(args: argparse.Namespace) -> "str | None":
    """What the model's weights are, as ``load_model`` chooses them; None for random weights."""
    if args.checkpoint is not None:
        return str(args.checkpoint)
    return None if args.model is not None else "bundled"


def run_onnx(args: argparse.Namespace) -> int:
    from promptseg.checkpoint import identify_model_type
    from promptseg.export import export_onnx_bundle

    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out must be a folder, but {args.out} is a file")
    model, description = load_model(args)
    print(f"model: {description}")
    summary = export_onnx_bundle(
        model,
        args.out,
        model_type=args.model or identify_model_type(model.state_dict()) or "unknown",
        weights=_weights(args),
        encoder_dtype=DTYPES[args.dtype],
        quantize=args.quantize,
        return_single_mask=args.return_single_mask,
        opset=args.opset,
    )
    for name, graph in summary["graphs"].items():
        print(f"{name:26s} {args.out / graph['file']}")
    print(f"description: {args.out / 'export.json'}")
    return 0


def run_tensorrt(args: argparse.Namespace) -> int:
    from promptseg.export.tensorrt import EngineLimits, TensorRTUnavailableError, build_sam_engines, import_tensorrt

    try:
        import_tensorrt()
    except TensorRTUnavailableError as error:
        print(f"promptseg export tensorrt: {error}", file=sys.stderr)
        return 1
    model, description = load_model(args)
    print(f"model: {description}")
    engines = build_sam_engines(
        model,
        precision=args.precision,
        limits=EngineLimits.up_to(args.max_images, args.max_prompts, args.max_points),
        cache_dir=args.cache_dir,
        device=model.device if model.device.type == "cuda" else None,
    )
    print(f"encoder engine: {engines.encoder}\ndecoder engine: {engines.decoder}")
    return 0
