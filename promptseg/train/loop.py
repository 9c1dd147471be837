"""The training loop: batches of images, simulated interactive sessions, AdamW with warm-up
and cosine decay, gradient accumulation, bf16 autocast, checkpoints and resume."""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from typing import Any, Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from promptseg.build import build_sam
from promptseg.data.sample import Sample
from promptseg.modeling import Sam
from promptseg.train.batch import TrainBatch, prepare_batch
from promptseg.train.checkpointing import TRAIN_STATE, WEIGHTS_PTH, load_train_state, save_train_state, save_weights
from promptseg.train.config import TrainConfig
from promptseg.train.interactive import round_schedule, run_session

LOG_FILE = "log.jsonl"


class Trainer:
    """Trains a SAM on a dataset of :class:`promptseg.data.sample.Sample`.

    Args:
        config: the run's settings.
        train_data: an indexable dataset of samples.
        validate: called with the model (in eval mode, under no_grad) after every
            epoch; returns metrics to log, e.g. :func:`promptseg.train.evaluate.evaluate`.
        resume: continue from ``config.out_dir``'s last checkpoint.
    """

    def __init__(
        self,
        config: TrainConfig,
        train_data: Sequence[Sample],
        validate: Optional[Callable[[Sam], dict[str, float]]] = None,
        resume: bool = False,
    ) -> None:
        self.config = config
        self.train_data = train_data
        self.validate = validate
        self.device = torch.device(config.device)
        config.out_dir.mkdir(parents=True, exist_ok=True)
        saved = load_train_state(config.out_dir) if resume else None
        weights = config.out_dir / WEIGHTS_PTH if resume else config.init_checkpoint
        self.model = build_sam(config.model_type, checkpoint=weights, device=self.device)
        self.model.train()
        if config.freeze_image_encoder:
            self.model.image_encoder.requires_grad_(False)
            self.model.image_encoder.eval()
        self.embedding_cache: dict[int, torch.Tensor] = {}
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.update = 0  # optimizer updates done
        self.epoch = 0
        self.batch_in_epoch = 0  # batches of the current epoch already consumed
        if saved is not None:
            self._restore(saved)

    # ------------------------------------------------------------------ schedule
    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_data) / self.config.batch_size)

    @property
    def total_updates(self) -> int:
        return math.ceil(self.config.epochs * self.batches_per_epoch / self.config.grad_accum)

    def _lr_factor(self, update: int) -> float:
        warmup = min(self.config.warmup_steps, max(1, self.total_updates // 10))
        if update < warmup:
            return (update + 1) / warmup
        progress = (update - warmup) / max(1, self.total_updates - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _epoch_order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return torch.randperm(len(self.train_data), generator=generator).tolist()

    # ------------------------------------------------------------------ steps
    def _autocast(self) -> Any:
        if not self.config.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _embeddings(self, batch: TrainBatch, indices: list[int]) -> torch.Tensor:
        if not self.config.freeze_image_encoder:
            return self.model.image_encoder(batch.images)
        missing = [i for i in indices if i not in self.embedding_cache]
        if missing:
            with torch.no_grad():
                computed = self.model.image_encoder(batch.images[[indices.index(i) for i in missing]])
            self.embedding_cache.update(zip(missing, computed.detach()))
        return torch.stack([self.embedding_cache[i] for i in indices])

    def train_step(self, indices: list[int]) -> dict[str, float]:
        """Forward and backward on the samples ``indices`` (no optimizer update)."""
        samples = [self.train_data[i] for i in indices]
        batch = prepare_batch(samples, self.model, self.config.objects_per_image, self.generator)
        if len(batch.targets) == 0:
            return {}
        schedule = round_schedule(self.config.rounds, self.config.silent_rounds, self.generator)
        with self._autocast():
            embeddings = self._embeddings(batch, indices)
            result = run_session(
                self.model, embeddings, batch.image_index, batch.targets, schedule,
                self.config.box_probability, self.generator,
            )
        (result.loss / self.config.grad_accum).backward()
        return {
            "loss": result.loss.item(),
            "first_iou": result.first_iou.mean().item(),
            "last_iou": result.last_iou.mean().item(),
        }

    def fit(self) -> dict[str, float]:
        """Train for the configured epochs (from where a resumed run stopped); return the last metrics."""
        config = self.config
        total_batches = config.epochs * self.batches_per_epoch
        done = self.epoch * self.batches_per_epoch + self.batch_in_epoch
        progress = tqdm(total=total_batches, initial=done, desc="training", unit="batch", dynamic_ncols=True)
        metrics: dict[str, float] = {}
        running: dict[str, float] = {}
        while self.epoch < config.epochs:
            order = self._epoch_order(self.epoch)
            while self.batch_in_epoch < self.batches_per_epoch:
                start = self.batch_in_epoch * config.batch_size
                step = self.train_step(order[start : start + config.batch_size])
                self.batch_in_epoch += 1
                for key, value in step.items():
                    running[key] = value if key not in running else 0.95 * running[key] + 0.05 * value
                if self.batch_in_epoch % config.grad_accum == 0 or self.batch_in_epoch == self.batches_per_epoch:
                    self._optimizer_update()
                    if self.update % config.checkpoint_every == 0:
                        self.save()
                progress.update(1)
                progress.set_postfix(loss=f"{running.get('loss', float('nan')):.3f}", mIoU=f"{running.get('last_iou', float('nan')):.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            self.epoch += 1
            self.batch_in_epoch = 0
            metrics = {"epoch": self.epoch, "update": self.update, **running}
            if self.validate is not None:
                metrics.update(self._validate())
            self._log(metrics)
            self.save()
        progress.close()
        return metrics

    def _optimizer_update(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.update += 1

    def _validate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad():
            result = self.validate(self.model)
        self.model.train()
        if self.config.freeze_image_encoder:
            self.model.image_encoder.eval()
        return {f"val_{key}": value for key, value in result.items()}

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        """Write the weights and the training state into ``out_dir``."""
        save_weights(self.model, self.config.out_dir)
        save_train_state(
            self.config.out_dir,
            {
                "config": self.config.to_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(),
                "update": self.update,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
            },
        )

    def _restore(self, saved: dict[str, Any]) -> None:
        changed = {
            key: (saved["config"].get(key), value)
            for key, value in self.config.to_dict().items()
            if key in ("model_type", "batch_size", "grad_accum", "seed", "freeze_image_encoder")
            and saved["config"].get(key) != value
        }
        if changed:
            raise ValueError(f"cannot resume {self.config.out_dir / TRAIN_STATE}: settings differ (saved, now): {changed}")
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.generator.set_state(saved["generator"])
        self.update, self.epoch, self.batch_in_epoch = saved["update"], saved["epoch"], saved["batch_in_epoch"]

    def _log(self, metrics: dict[str, float]) -> None:
        record = {"time": time.time(), **metrics}
        with open(self.config.out_dir / LOG_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
