"""Arguments and model loading shared by the commands that run a model, and the mask generator's
arguments (their defaults are the model's preset, :mod:`promptseg.settings`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from promptseg.build import build_sam, model_types, record_engine
from promptseg.bundled import BUNDLED_DESCRIPTION, build_bundled_sam
from promptseg.encoders.auto import choose_engine
from promptseg.export import prepare_engine
from promptseg.modeling import Sam
from promptseg.sam2.model_types import SAM2_CHOICES, build_sam2_model, is_sam2_model_type
from promptseg.settings import CPU_ENGINES, DTYPES, GeneratorSettings, preset, preset_for

# The mask generator's arguments: setting name -> (type, help text).
GENERATOR_ARGUMENTS = {
    "points_per_side": (int, "prompt grid side"),
    "pred_iou_thresh": (float, "minimum predicted IoU"),
    "stability_score_thresh": (float, "minimum stability score"),
    "box_nms_thresh": (float, "box NMS IoU threshold"),
    "crop_n_layers": (int, "crop layers to also prompt"),
    "min_mask_region_area": (int, "remove holes and islands smaller than this many pixels (0: off)"),
}
RANDOM_WEIGHTS_WARNING = """
################################################################################
#  WARNING: no --checkpoint was given, so the model has RANDOM WEIGHTS.        #
#  The masks below are noise. Pass --checkpoint sam_vit_b_01ec64.pth (or any   #
#  official SAM checkpoint) for real segmentations, or leave out --model to    #
#  use the small model bundled with promptseg.                                 #
################################################################################
"""


ENGINE_HELP = (
    "what embeds images on the CPU: auto (default: ONNX Runtime when this model's export is already "
    "cached, else torch; $PROMPTSEG_CPU_ENGINE overrides), torch, onnxruntime (exact; the first run "
    "exports the model to the cache, about a minute for vit_b), onnxruntime-int8 (faster, approximate)"
)


def add_model_arguments(parser: argparse.ArgumentParser, engine: bool = True) -> None:
    """--model, --checkpoint, --device and --dtype, and with ``engine`` --engine (the CPU engine)."""
    parser.add_argument(
        "--model", choices=model_types() + SAM2_CHOICES, metavar="MODEL",
        help=f"model type: one of {', '.join(model_types() + SAM2_CHOICES)} (SAM 2.1 / SAM 2: sam2.1_hiera_* / "
        "sam2_hiera_*); without --model and --checkpoint the bundled vit_tiny model is used",
    )
    parser.add_argument(
        "--checkpoint", type=Path,
        help="official .pth or .safetensors weights (or ours); for SAM 2 the official .pt with --model sam2.1_hiera_*",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="model precision")
    if engine:
        parser.add_argument("--engine", default="auto", choices=CPU_ENGINES, help=ENGINE_HELP)


def cpu_engine(args: argparse.Namespace) -> str:
    """The CPU engine the arguments ask for (``--engine``; ``auto`` where the command has another --engine)."""
    engine = getattr(args, "engine", "auto")
    return engine if engine in CPU_ENGINES else "auto"


def load_model(args: argparse.Namespace) -> tuple[Sam, str]:
    """The model the arguments ask for, and a one-line description of it (printed by the caller).

    No --model and no --checkpoint: the bundled model. --checkpoint: those weights
    (the type from --model, else read from the file). --model alone: random
    weights, with a loud warning on stderr. A SAM 2 --model (``sam2.1_hiera_t``, ...) gives a
    ``promptseg.sam2`` model, which every command takes where it takes a SAM.
    """
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.dtype]
    engine = cpu_engine(args)
    if args.model is None and args.checkpoint is None:
        model = prepare_engine(build_bundled_sam(device=device, dtype=dtype, engine=engine))
        return model, with_engine(model, f"{BUNDLED_DESCRIPTION} (bundled), on {device}, {args.dtype}")
    if args.checkpoint is None:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
    if is_sam2_model_type(args.model):
        if engine not in ("auto", "torch"):
            raise ValueError(f"--engine {engine} runs SAM models; a SAM 2 model ({args.model}) runs in torch")
        model = build_sam2_model(args.model, args.checkpoint, device=device, dtype=dtype)
    else:
        model = prepare_engine(build_sam(args.model, checkpoint=args.checkpoint, device=device, dtype=dtype, engine=engine))
    weights = "RANDOM weights" if args.checkpoint is None else f"weights {args.checkpoint}"
    description = f"{args.model or 'model type read from the checkpoint'} with {weights}, on {device}, {args.dtype}"
    return model, with_engine(model, description)


def with_engine(model: Sam, description: str) -> str:
    """``description`` plus, for a model on the CPU, which engine will embed its images and why."""
    if model.device.type != "cpu":
        return description
    return f"{description}; image encoder: {choose_engine(model)}"


def preset_help(name: str, purpose: str = "generate") -> str:
    """``default: <the official preset's value>; <the bundled preset's> with the bundled model`` for
    the generator setting ``name`` (the two values once when they agree)."""
    official, bundled = getattr(preset("official", purpose), name), getattr(preset("bundled", purpose), name)
    if official == bundled:
        return f"default {official}"
    return f"default {official}; {bundled} with the bundled model"


def add_generator_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...], purpose: str = "generate") -> None:
    """``--points-per-side`` etc. for the generator settings ``names`` (keys of :data:`GENERATOR_ARGUMENTS`);
    each defaults to None: the value of the model's preset for ``purpose`` (:func:`generator_settings`)."""
    for name in names:
        kind, text = GENERATOR_ARGUMENTS[name]
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{text} ({preset_help(name, purpose)})")


def generator_settings(args: argparse.Namespace, names: tuple[str, ...], purpose: str = "generate") -> GeneratorSettings:
    """The model's preset for ``purpose`` (--model, --checkpoint: :func:`promptseg.settings.preset_for`),
    changed by the generator arguments ``names`` that were given."""
    base = preset_for(args.model, args.checkpoint, purpose)
    return base.replace(**{name: getattr(args, name) for name in names})


def load_text_model_from_args(args: argparse.Namespace) -> tuple[Sam, object, str]:
    """The model and ``TextPrompting`` for ``--text``: the bundled text model, or the text checkpoint
    --checkpoint; the concept encoder is the bundled one, or open_clip with --clip-model/--clip-checkpoint."""
    from promptseg.text import load_concept_encoder, load_text_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.checkpoint is None and args.model not in (None, "vit_tiny"):
        raise ValueError(
            f"--text with --model {args.model} needs text weights for it: pass --checkpoint with a file written by "
            "`promptseg train --text` (only the bundled vit_tiny ships with text weights)"
        )
    concept = None
    if getattr(args, "clip_model", None) is not None or getattr(args, "clip_checkpoint", None) is not None:
        concept = load_concept_encoder("open_clip", model=args.clip_model, checkpoint=args.clip_checkpoint)
    model, text = load_text_model(args.checkpoint, concept, args.model, device=device, dtype=DTYPES[args.dtype])
    prepare_engine(record_engine(model, cpu_engine(args)))
    source = "bundled vit_tiny text model" if args.checkpoint is None else f"text checkpoint {args.checkpoint}"
    concept_name = getattr(text.concept_encoder, "name", type(text.concept_encoder).__name__)
    return model, text, f"{source}, concept encoder: {concept_name}, on {device}, {args.dtype}"
