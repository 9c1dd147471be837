"""``promptseg train``: train or fine-tune on a COCO-format dataset or on synthetic scenes."""

from __future__ import annotations

import argparse
from pathlib import Path

from promptseg.build import model_types


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune SAM with simulated interactive prompts",
        description="Writes model.pth / model.safetensors (loadable by build_sam and by segment_anything), "
        "train_state.pt (for --resume) and log.jsonl into --out. With --text: trains text prompts on captioned "
        "synthetic scenes and writes text_model.safetensors and text_log.jsonl. With --concepts: trains the bundled "
        "kind of concept encoder on captioned synthetic scenes and writes concept_model.safetensors.",
    )
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", type=Path, metavar="DIR", help="COCO-format folder: DIR/images/ and DIR/instances.json")
    data.add_argument("--synthetic", type=int, metavar="N", help="train on N generated synthetic scenes")
    data.add_argument(
        "--text", action="store_true",
        help="train text prompts (a text prompt encoder and, lightly, the mask decoder) on captioned synthetic "
        "scenes, the first prompt being the concept encoder's embedding of the object's crop; starts from the "
        "bundled model unless --checkpoint is given",
    )
    data.add_argument(
        "--concepts", action="store_true",
        help="train a concept encoder of the bundled kind (a small CLIP over the synthetic vocabulary) contrastively "
        "on crops and sampled captions of captioned synthetic scenes, on the CPU",
    )
    parser.add_argument("--annotations", type=Path, help="instances JSON (default DIR/instances.json)")
    parser.add_argument("--model", choices=model_types(), help="architecture (required with --data or --synthetic)")
    parser.add_argument("--checkpoint", type=Path, help="initial weights (an official checkpoint or ours); default: from scratch")
    parser.add_argument("--freeze-image-encoder", action="store_true", help="train only the prompt encoder and decoder")
    parser.add_argument("--epochs", type=int, help="passes over the data (required with --data or --synthetic)")
    parser.add_argument(
        "--batch-size", type=int,
        help="images per step (required with --data or --synthetic); with --concepts crops per step (default 128)",
    )
    parser.add_argument(
        "--lr", type=float,
        help="peak AdamW learning rate (required with --data or --synthetic; default 8e-3 with --text, 2e-3 with --concepts)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--rounds", type=int, default=None, help="corrective-click rounds (default 8; with --text 1)")
    parser.add_argument("--silent-rounds", type=int, default=2, choices=(0, 1, 2), help="rounds without a new click")
    parser.add_argument("--objects-per-image", type=int, default=4)
    parser.add_argument("--box-probability", type=float, default=0.5, help="chance the first prompt is a box")
    parser.add_argument("--grad-accum", type=int, default=1, help="steps per optimizer update")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--checkpoint-every", type=int, default=500, help="optimizer updates between checkpoints")
    parser.add_argument(
        "--val-scenes", type=int, default=100, help="synthetic validation scenes (with --synthetic or --concepts)"
    )
    parser.add_argument("--val-images", type=int, default=50, help="images held out for validation (with --data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    from promptseg.cli.train_text import add_text_arguments

    add_text_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.text:
        from promptseg.cli.train_text import run_text

        return run_text(args)
    if args.concepts:
        from promptseg.cli.train_text import run_concepts

        return run_concepts(args)
    missing = [flag for flag, value in (("--model", args.model), ("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--lr", args.lr)) if value is None]
    if missing:
        raise SystemExit(
            f"promptseg train: error: the following arguments are required with --data or --synthetic: {', '.join(missing)}"
        )

    from promptseg.train import TrainConfig, Trainer
    from promptseg.train.datasets import training_split
    from promptseg.train.evaluate import evaluate

    config = TrainConfig(
        model_type=args.model,
        out_dir=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        init_checkpoint=args.checkpoint,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        rounds=8 if args.rounds is None else args.rounds,
        silent_rounds=args.silent_rounds,
        box_probability=args.box_probability,
        objects_per_image=args.objects_per_image,
        grad_accum=args.grad_accum,
        bf16=args.bf16,
        freeze_image_encoder=args.freeze_image_encoder,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
    )
    train_data, val_data = training_split(
        data_dir=args.data, annotations=args.annotations, synthetic=args.synthetic,
        val_scenes=args.val_scenes, val_images=args.val_images,
    )
    print(f"training {args.model} on {len(train_data)} images, validating on {len(val_data)}; writing to {args.out}")
    trainer = Trainer(config, train_data, validate=lambda model: evaluate(model, val_data).as_dict(), resume=args.resume)
    metrics = trainer.fit()
    print(f"done: {metrics}")
    return 0
