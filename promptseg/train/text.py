"""``promptseg train --text``: train a text prompt encoder (and lightly the mask decoder) as SAM's
paper does.

An object's first prompt is, with ``text_probability``, the concept encoder's IMAGE embedding of
its crop (the crop expanded around the mask's box, :func:`promptseg.text.crops.object_crop`),
projected to sparse tokens by the :class:`TextPromptEncoder`, sometimes with one click (for a
whole that has a part, the click lands on the part half the time, so the text must decide the
level); the other objects start from a point or a box as in ``promptseg train``. The corrective
rounds stay as they are (the text tokens stay in the prompt). The image encoder and the concept
encoder are frozen and their outputs computed once. At inference the concept encoder's TEXT
embedding of a phrase takes the image embedding's place, which works because the concept encoder
aligns the two.

Scenes come from :func:`promptseg.data.concepts.generate_concept_scene` with seeds
``(TEXT_TRAIN_SEED, i)`` for training and ``(TEXT_VALIDATION_SEED, i)`` for validation;
``promptseg.data.synthetic.HELD_OUT_SEED`` scenes are never used here.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.modeling import Sam
from promptseg.text.checkpoint import save_text_checkpoint
from promptseg.text.crops import object_crop
from promptseg.text.prompt_encoder import TextPromptEncoder
from promptseg.train.interactive import TextFirstPrompt, round_schedule, run_session

TEXT_TRAIN_SEED = 3100
TEXT_VALIDATION_SEED = 3200
TEXT_WEIGHTS = "text_model.safetensors"
LOG_FILE = "text_log.jsonl"


@dataclass
class TextTrainConfig:
    """Settings of a text prompt training run.

    Attributes:
        out_dir: where the text checkpoint and the log go.
        scenes, val_scenes: captioned synthetic scenes for training and validation.
        steps: optimizer updates; objects_per_step: objects (from random scenes) per update.
        lr: peak AdamW learning rate of the text prompt encoder; decoder_lr: of the mask decoder
            (0 freezes it).
        text_probability: chance that an object's first prompt is its crop embedding.
        click_probability: chance that a text-first object also gets a click in the first prompt.
        part_click_probability: chance that such a click on a whole with a part lands on the part.
        pair_weight: how much more often objects of a nested part/whole pair are drawn than others
            (they teach the text to pick the level a click leaves open, and are rare).
        caption_probability: chance that the TEXT embedding of the object's caption replaces its
            crop embedding (a promptseg addition; 0 is the paper's recipe).
        text_only_multimask: a text-only first prompt trains the 3 ambiguity outputs (lowest loss,
            as SAM trains a single click) instead of the single-mask output (a promptseg addition;
            False is the paper's recipe). Text alone still answers best with the single-mask
            output (measured on validation scenes), which the decoder learns through the shared
            transformer.
        rounds, silent_rounds: corrective rounds after the first prompt (see ``promptseg train``).
        box_probability: chance that a non-text first prompt is a box.
        num_tokens, hidden_dim: shape of the text prompt encoder.
        crop_expand: crop side over the mask box's longer side.
        max_minutes: stop training after this wall time (then validate and save), or None.
        base: "bundled" (the bundled vit_tiny; the checkpoint holds only the mask decoder beside the
            text weights) or a path to a SAM checkpoint (the checkpoint holds the whole model).
        model_type: the architecture of ``base`` when it is a path (default: read from the file).
    """

    out_dir: Path
    scenes: int = 300
    val_scenes: int = 30
    steps: int = 1200
    objects_per_step: int = 16
    lr: float = 8e-3
    decoder_lr: float = 3e-4
    weight_decay: float = 0.01
    text_probability: float = 0.7
    click_probability: float = 0.4
    part_click_probability: float = 0.5
    pair_weight: float = 3.0
    caption_probability: float = 0.0
    text_only_multimask: bool = False
    rounds: int = 2
    silent_rounds: int = 0
    box_probability: float = 0.5
    num_tokens: int = 4
    hidden_dim: int = 256
    crop_expand: float = 1.2
    seed: int = 0
    device: str = "cpu"
    max_minutes: Optional[float] = None
    base: str = "bundled"
    model_type: Optional[str] = None

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        for name in ("scenes", "steps", "objects_per_step", "num_tokens", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("text_probability", "click_probability", "part_click_probability", "caption_probability", "box_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.lr <= 0 or self.decoder_lr < 0:
            raise ValueError(f"lr must be > 0 and decoder_lr >= 0, got {self.lr}, {self.decoder_lr}")


@dataclass
class ConceptObjects:
    """Cached inputs of text training: S scenes, N objects.

    Attributes:
        embeddings: (S, C, h, w) image embeddings of the frozen image encoder.
        targets: (N, side, side) bool masks in the model's input frame.
        image_index: (N,) int64 scene of each object.
        crop_embeddings: (N, D) concept embeddings of each object's crop.
        caption_embeddings: (N, D) concept embeddings of each object's caption.
        click_regions: (N, side, side) bool: a whole's part where it has one, else the object.
        has_part: (N,) bool, the object is a whole with a part.
        in_pair: (N,) bool, the object is a whole with a part or a part of a whole.
    """

    embeddings: torch.Tensor
    targets: torch.Tensor
    image_index: torch.Tensor
    crop_embeddings: torch.Tensor
    caption_embeddings: torch.Tensor
    click_regions: torch.Tensor
    has_part: torch.Tensor
    in_pair: torch.Tensor


@dataclass
class SceneCache:
    """What :func:`prepare_objects` computes before the concept encoder runs (reusable across concept
    encoders): the :class:`ConceptObjects` fields but the concept embeddings, plus the N objects'
    crops ((S, S, 3) uint8) and captions."""

    embeddings: torch.Tensor
    targets: torch.Tensor
    image_index: torch.Tensor
    click_regions: torch.Tensor
    has_part: torch.Tensor
    crops: list
    captions: list


@torch.no_grad()
def cache_scenes(model: Sam, seeds: list, crop_expand: float = 1.2, progress: bool = True, batch_size: int = 8) -> SceneCache:
    """Draw the scenes of ``seeds``, run the frozen image encoder ``batch_size`` scenes at a time,
    and cut each object's crop (:func:`promptseg.text.crops.object_crop`)."""
    from promptseg.data.concepts import generate_concept_scene
    from promptseg.prompts.frames import ResizeLongestSide
    from promptseg.train.batch import resize_masks

    side = model.image_encoder.img_size
    transform = ResizeLongestSide(side)
    embeddings, targets, image_index, crops, captions, regions, has_part = [], [], [], [], [], [], []
    pending: list[torch.Tensor] = []
    for scene_index, seed in enumerate(tqdm(seeds, desc="encoding scenes", unit="scene", disable=not progress)):
        scene = generate_concept_scene(seed)
        resized = transform.apply_image(scene.image)
        pending.append(model.preprocess(torch.from_numpy(resized).permute(2, 0, 1).to(model.device)))
        if len(pending) == batch_size or scene_index + 1 == len(seeds):
            embeddings.extend(model.image_encoder(torch.stack(pending)))
            pending = []
        masks = resize_masks(scene.masks, resized.shape[:2], side)
        for index in range(len(scene.masks)):
            if not scene.masks[index].any():
                continue
            children = np.flatnonzero(scene.parents == index)
            targets.append(masks[index])
            regions.append(masks[children[0]] if len(children) and masks[children[0]].any() else masks[index])
            has_part.append(bool(len(children)))
            image_index.append(scene_index)
            crops.append(object_crop(scene.image, scene.masks[index], crop_expand))
            captions.append(scene.caption(index))
    return SceneCache(
        embeddings=torch.stack(embeddings),
        targets=torch.stack(targets).to(model.device),
        image_index=torch.tensor(image_index, dtype=torch.long, device=model.device),
        click_regions=torch.stack(regions).to(model.device),
        has_part=torch.tensor(has_part, device=model.device),
        crops=crops,
        captions=captions,
    )


@torch.no_grad()
def prepare_objects(
    model: Sam, concept_encoder: Any, seeds: list, crop_expand: float = 1.2, progress: bool = True,
    cache: Optional[SceneCache] = None,
) -> ConceptObjects:
    """The :class:`ConceptObjects` of the scenes of ``seeds`` (or of a ready ``cache`` of them)."""
    cache = cache if cache is not None else cache_scenes(model, seeds, crop_expand, progress)
    device = cache.targets.device
    return ConceptObjects(
        embeddings=cache.embeddings,
        targets=cache.targets,
        image_index=cache.image_index,
        crop_embeddings=_encode_in_chunks(concept_encoder.encode_images, cache.crops).to(device),
        caption_embeddings=_encode_in_chunks(concept_encoder.encode_text, cache.captions).to(device),
        click_regions=cache.click_regions,
        has_part=cache.has_part,
        in_pair=cache.has_part | _parts(cache.targets, cache.image_index),
    )


def _parts(targets: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the object's mask lies inside another object's mask of the same scene."""
    flags = torch.zeros(len(targets), dtype=torch.bool, device=targets.device)
    for scene in image_index.unique():
        members = torch.nonzero(image_index == scene)[:, 0]
        masks = targets[members].flatten(1).float()
        overlap = masks @ masks.T
        inside = (overlap >= masks.sum(1)[:, None]) & ~torch.eye(len(members), dtype=torch.bool, device=targets.device)
        flags[members] = inside.any(1)
    return flags


def _encode_in_chunks(encode: Any, items: list, chunk: int = 256) -> torch.Tensor:
    return torch.cat([encode(items[start : start + chunk]).float().cpu() for start in range(0, len(items), chunk)])


class TextTrainer:
    """Trains a :class:`TextPromptEncoder` (and the mask decoder at ``decoder_lr``) on a frozen SAM."""

    def __init__(self, config: TextTrainConfig, model: Sam, concept_encoder: Any, data: Optional[ConceptObjects] = None) -> None:
        self.config = config
        self.model = model
        self.concept_encoder = concept_encoder
        self.device = torch.device(config.device)
        self.model.to(self.device)
        self.model.requires_grad_(False)
        self.model.eval()
        concept_dim = int(concept_encoder.dim)
        generator = torch.Generator().manual_seed(config.seed)
        self.text_encoder = TextPromptEncoder(concept_dim, model.prompt_encoder.embed_dim, config.num_tokens, config.hidden_dim)
        self.text_encoder.to(self.device).train()
        groups = [{"params": list(self.text_encoder.parameters()), "lr": config.lr}]
        if config.decoder_lr > 0:
            model.mask_decoder.requires_grad_(True)
            model.mask_decoder.train()
            groups.append({"params": list(model.mask_decoder.parameters()), "lr": config.decoder_lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay, foreach=True)
        warmup = max(1, config.steps // 20)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, config.steps - warmup))),
        )
        self.generator = generator
        self.data = data
        self.val_data: Optional[ConceptObjects] = None

    def prepare(self) -> None:
        """Draw and encode the training and validation scenes (unless given)."""
        config = self.config
        if self.data is None:
            self.data = prepare_objects(self.model, self.concept_encoder, [(TEXT_TRAIN_SEED, i) for i in range(config.scenes)], config.crop_expand)
        if self.val_data is None and config.val_scenes > 0:
            seeds = [(TEXT_VALIDATION_SEED, i) for i in range(config.val_scenes)]
            self.val_data = prepare_objects(self.model, self.concept_encoder, seeds, config.crop_expand)

    def text_prompt(self, data: ConceptObjects, objects: torch.Tensor, generator: torch.Generator, text_probability: float, click_probability: float) -> TextFirstPrompt:
        """The :class:`TextFirstPrompt` of ``objects`` (indices into ``data``)."""
        config = self.config
        count = len(objects)
        rand = lambda: torch.rand(count, generator=generator).to(self.device)  # noqa: E731
        used = rand() < text_probability
        click = used & (rand() < click_probability)
        caption = rand() < config.caption_probability
        concept = torch.where(caption[:, None], data.caption_embeddings[objects], data.crop_embeddings[objects])
        on_part = data.has_part[objects] & (rand() < config.part_click_probability)
        regions = torch.where(on_part[:, None, None], data.click_regions[objects], data.targets[objects])
        return TextFirstPrompt(self.text_encoder(concept), used, click, regions, config.text_only_multimask)

    def step(self) -> dict[str, float]:
        """One optimizer update on ``objects_per_step`` random objects."""
        config, data = self.config, self.data
        weights = 1.0 + (config.pair_weight - 1.0) * data.in_pair.float().cpu()
        objects = torch.multinomial(weights, config.objects_per_step, replacement=True, generator=self.generator).to(self.device)
        text = self.text_prompt(data, objects, self.generator, config.text_probability, config.click_probability)
        schedule = round_schedule(config.rounds, config.silent_rounds, self.generator)
        result = run_session(
            self.model, data.embeddings, data.image_index[objects], data.targets[objects], schedule,
            config.box_probability, self.generator, text,
        )
        self.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for group in self.optimizer.param_groups for p in group["params"]], 1.0)
        self.optimizer.step()
        self.scheduler.step()
        alone = text.used & ~text.click
        first_text = result.first_iou[alone].mean().item() if alone.any() else float("nan")
        return {"loss": result.loss.item(), "first_iou_text_only": first_text, "last_iou": result.last_iou.mean().item()}

    @torch.no_grad()
    def validate(self, data: ConceptObjects) -> dict[str, float]:
        """First-round IoU (low-res grid) of the single-mask output of every object prompted by the
        TEXT embedding of its caption alone and with one click."""
        self.text_encoder.eval()
        self.model.eval()
        generator = torch.Generator().manual_seed(1)
        objects = torch.arange(len(data.targets), device=self.device)
        metrics = {}
        for name, click in (("text", 0.0), ("text_click", 1.0)):
            prompt = self.text_prompt(data, objects, generator, 1.0, click)
            prompt.tokens = self.text_encoder(data.caption_embeddings)
            prompt.alone_multimask = False  # measured as the predictor answers: the single-mask output
            result = run_session(self.model, data.embeddings, data.image_index, data.targets, [], 0.0, generator, prompt)
            metrics[f"val_{name}_iou"] = result.first_iou.mean().item()
        self.text_encoder.train()
        if self.config.decoder_lr > 0:
            self.model.mask_decoder.train()
        return metrics

    def fit(self, validate_every: int = 200) -> dict[str, float]:
        """Prepare the data, train for ``steps`` updates, save; return the last metrics."""
        self.prepare()
        config = self.config
        config.out_dir.mkdir(parents=True, exist_ok=True)
        running: dict[str, float] = {}
        metrics: dict[str, float] = {}
        progress = tqdm(range(config.steps), desc="text training", unit="step", dynamic_ncols=True)
        started = time.monotonic()
        for update in progress:
            out_of_time = config.max_minutes is not None and time.monotonic() - started > 60 * config.max_minutes
            for key, value in self.step().items():
                if not math.isnan(value):
                    running[key] = value if key not in running else 0.95 * running[key] + 0.05 * value
            progress.set_postfix({key: f"{value:.3f}" for key, value in running.items()})
            last = update + 1 == config.steps or out_of_time
            if (update + 1) % validate_every == 0 or last:
                metrics = {"update": update + 1, "minutes": (time.monotonic() - started) / 60, **running}
                if self.val_data is not None:
                    metrics.update(self.validate(self.val_data))
                self._log(metrics)
            if out_of_time:
                print(f"stopping after {update + 1} updates: the {config.max_minutes} minute budget is spent")
                break
        self.save()
        return metrics

    def save(self) -> Path:
        """Write the text weights and the mask decoder into ``out_dir/text_model.safetensors``."""
        self.model.eval()
        modules = ["mask_decoder"] if self.config.base == "bundled" else None
        return save_text_checkpoint(
            self.config.out_dir / TEXT_WEIGHTS, self.text_encoder, self.model, modules,
            concept_encoder=str(getattr(self.concept_encoder, "name", type(self.concept_encoder).__name__)),
            extra={"train_config": json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.config).items()})},
        )

    def _log(self, metrics: dict[str, float]) -> None:
        with open(self.config.out_dir / LOG_FILE, "a") as handle:
            handle.write(json.dumps({"time": time.time(), **metrics}) + "\n")
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
