"""``promptseg train --text`` and ``promptseg train --concepts``: their options and runs (see
:mod:`promptseg.train.text`, text prompt training, and :mod:`promptseg.train.concepts`, concept
encoder training)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, TypeVar

Number = TypeVar("Number", int, float)


def add_text_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that only ``--text`` or ``--concepts`` reads."""
    group = parser.add_argument_group("text prompts and concepts (--text, --concepts)")
    group.add_argument(
        "--scenes", type=int, default=None,
        help="captioned training scenes (default 300 with --text; 2000 with --concepts, each giving ~5 crops)",
    )
    group.add_argument("--text-val-scenes", type=int, default=30, help="captioned validation scenes (default 30)")
    group.add_argument("--steps", type=int, default=None, help="optimizer updates (default 1200 with --text, 1500 with --concepts)")
    group.add_argument("--objects-per-step", type=int, default=16, help="objects per update (default 16)")
    group.add_argument("--decoder-lr", type=float, default=3e-4, help="mask decoder learning rate; 0 freezes it")
    group.add_argument("--text-probability", type=float, default=0.7, help="chance an object's first prompt is its crop embedding")
    group.add_argument("--click-probability", type=float, default=0.4, help="chance a text first prompt also has a click")
    group.add_argument("--pair-weight", type=float, default=3.0, help="how much more often nested part/whole objects are drawn")
    group.add_argument(
        "--caption-probability", type=float, default=0.0,
        help="chance the caption's text embedding replaces the crop embedding (0: the paper's recipe)",
    )
    group.add_argument(
        "--text-only-multimask", action="store_true",
        help="train a text-only first prompt on the 3 ambiguity outputs (lowest loss, as a single click) instead of "
        "the single-mask output (a promptseg addition; off: the paper's recipe)",
    )
    group.add_argument("--num-tokens", type=int, default=4, help="sparse tokens per text prompt")
    group.add_argument(
        "--max-minutes", type=float, default=None,
        help="stop after this wall time, then save (with --concepts the budget counts data generation, and the "
        "learning rate decays over it)",
    )
    group.add_argument("--threads", type=int, default=1, help="torch intra-op threads with --concepts (default 1)")
    group.add_argument("--concept-backend", choices=("bundled", "open_clip"), default="bundled", help="concept encoder")
    group.add_argument("--clip-model", default=None, help="open_clip architecture, e.g. ViT-B-16 (with --concept-backend open_clip)")
    group.add_argument("--clip-checkpoint", type=Path, default=None, help="local open_clip weights (no download)")


def run_text(args: argparse.Namespace) -> int:
    import torch

    from promptseg.build import build_sam
    from promptseg.bundled import build_bundled_sam
    from promptseg.text import load_concept_encoder
    from promptseg.train.text import TextTrainConfig, TextTrainer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = TextTrainConfig(
        out_dir=args.out,
        scenes=_default(args.scenes, 300),
        val_scenes=args.text_val_scenes,
        steps=_default(args.steps, 1200),
        objects_per_step=args.objects_per_step,
        lr=_default(args.lr, 8e-3),
        decoder_lr=args.decoder_lr,
        weight_decay=args.weight_decay,
        text_probability=args.text_probability,
        click_probability=args.click_probability,
        pair_weight=args.pair_weight,
        caption_probability=args.caption_probability,
        text_only_multimask=args.text_only_multimask,
        rounds=1 if args.rounds is None else args.rounds,
        silent_rounds=0,
        box_probability=args.box_probability,
        num_tokens=args.num_tokens,
        seed=args.seed,
        device=device,
        max_minutes=args.max_minutes,
        base="bundled" if args.checkpoint is None else str(args.checkpoint),
        model_type=args.model,
    )
    if args.checkpoint is None:
        model = build_bundled_sam(device=device)
    else:
        model = build_sam(args.model, checkpoint=args.checkpoint, device=device)
    concept_encoder = load_concept_encoder(args.concept_backend, model=args.clip_model, checkpoint=args.clip_checkpoint)
    print(f"training text prompts on {config.scenes} captioned scenes ({config.val_scenes} for validation); writing to {args.out}")
    trainer = TextTrainer(config, model, concept_encoder)
    metrics = trainer.fit()
    print(f"done: {metrics}; weights in {args.out / 'text_model.safetensors'}")
    return 0


def run_concepts(args: argparse.Namespace) -> int:
    """Train a concept encoder into ``args.out / CONCEPT_WEIGHTS``."""
    from promptseg.train.concepts import CONCEPT_WEIGHTS, train

    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / CONCEPT_WEIGHTS
    train(
        str(out),
        scenes=_default(args.scenes, 2000),
        steps=_default(args.steps, 1500),
        batch_size=_default(args.batch_size, 128),
        lr=_default(args.lr, 2e-3),
        validation_scenes=args.val_scenes,
        seed=args.seed,
        max_minutes=args.max_minutes,
        threads=args.threads,
    )
    print(f"done; weights in {out}")
    return 0


def _default(value: Optional[Number], default: Number) -> Number:
    """``value``, or ``default`` when the option was not given (its default depends on --text / --concepts)."""
    return default if value is None else value
