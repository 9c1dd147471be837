"""Settings of a training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved with every checkpoint).

    Attributes:
        model_type: a registry name (``vit_b``, ``vit_tiny``, ...).
        out_dir: where checkpoints, the final weights and the log go.
        epochs, batch_size, lr: passes over the data, images per step, peak AdamW learning rate.
        init_checkpoint: weights to start from (an official checkpoint or ours); None is from scratch.
        weight_decay, warmup_steps: AdamW decay; linear warm-up steps before the cosine decay.
        rounds: corrective-click rounds after the first prompt.
        silent_rounds: extra rounds without a new click (0-2): one at a random place, one at the end.
        box_probability: chance that an object's first prompt is a jittered box (else a point).
        objects_per_image: objects prompted per image and step (each runs all rounds).
        grad_accum: steps whose gradients are summed before an optimizer update.
        bf16: run the forward passes under bfloat16 autocast.
        freeze_image_encoder: do not train the encoder; embeddings are computed once and cached.
        checkpoint_every: optimizer updates between checkpoints (and at the end of every epoch).
        seed: seeds shuffling, object choice and prompt simulation.
        device: torch device string.
    """

    model_type: str
    out_dir: Path
    epochs: int
    batch_size: int
    lr: float
    init_checkpoint: Optional[Path] = None
    weight_decay: float = 0.1
    warmup_steps: int = 200
    rounds: int = 8
    silent_rounds: int = 2
    box_probability: float = 0.5
    objects_per_image: int = 4
    grad_accum: int = 1
    bf16: bool = False
    freeze_image_encoder: bool = False
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.init_checkpoint is not None:
            self.init_checkpoint = Path(self.init_checkpoint)
        positive = ("epochs", "batch_size", "objects_per_image", "grad_accum", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.rounds < 0 or not 0 <= self.silent_rounds <= 2:
            raise ValueError(f"rounds must be >= 0 and silent_rounds in 0..2, got {self.rounds}, {self.silent_rounds}")
        if not 0.0 <= self.box_probability <= 1.0:
            raise ValueError(f"box_probability must be in [0, 1], got {self.box_probability}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (paths as strings), for checkpoints and logs."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
