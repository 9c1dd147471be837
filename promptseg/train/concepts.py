"""Train the bundled concept encoder: contrastive learning on crops of captioned synthetic scenes.

    promptseg train --concepts --out DIR     # writes DIR/concept_model.safetensors

Each batch pairs object crops (random jitter, flips and quarter turns, none of which changes a
caption) with sampled captions naming some of their attributes
(:func:`promptseg.train.concepts_data.sample_caption`). A caption may describe several crops of the
batch, so both directions of the CLIP loss use soft targets spread over every match; background
crops match no caption and serve as negatives for the texts.
"""

from __future__ import annotations

import json
import time
from multiprocessing import Pool
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from promptseg.data.concepts import CONCEPT_TRAIN_SEED, CONCEPT_VALIDATION_SEED, generate_concept_scene
from promptseg.text.bundled_model import BundledConceptEncoder
from promptseg.train.concepts_data import background_crops, match_matrix, sample_caption, scene_crops
from promptseg.train.concepts_eval import caption_retrieval

CONCEPT_WEIGHTS = "concept_model.safetensors"  # the file ``promptseg train --concepts`` writes into --out
STORED_SIDE, STORED_EXPAND = 63, 1.35  # a random 56-pixel window of a 63-pixel crop spans about 1.2x the box


def _scene_items(index: int):
    scene = generate_concept_scene((CONCEPT_TRAIN_SEED, index))
    rng = np.random.default_rng((CONCEPT_TRAIN_SEED, index, 1))
    objects = scene_crops(scene, STORED_SIDE, STORED_EXPAND)
    backgrounds = background_crops(scene, rng, 1, STORED_SIDE)
    return np.concatenate([objects, backgrounds]), list(scene.attributes) + [None] * len(backgrounds)


def build_training_set(scenes: int, workers: int = 2) -> tuple[np.ndarray, list]:
    """(N, 72, 72, 3) uint8 crops of ``scenes`` training scenes and their attributes (None: background)."""
    crops, attributes = [], []
    with Pool(workers) as pool:
        for scene_crops_, scene_attributes in tqdm(
            pool.imap(_scene_items, range(scenes), chunksize=8), total=scenes, desc="crops"
        ):
            crops.append(scene_crops_)
            attributes += scene_attributes
    return np.concatenate(crops), attributes


def augment(crops: np.ndarray, rng: np.random.Generator, side: int) -> torch.Tensor:
    """(B, 3, side, side) float pixels: a random window, flip and quarter turn of each crop."""
    out = np.empty((len(crops), side, side, 3), np.uint8)
    room = crops.shape[1] - side
    for i, crop in enumerate(crops):
        y, x = rng.integers(0, room + 1, 2)
        window = crop[y : y + side, x : x + side]
        if rng.random() < 0.5:
            window = window[:, ::-1]
        out[i] = np.rot90(window, int(rng.integers(4)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0 - 0.5


def contrastive_loss(text: torch.Tensor, image: torch.Tensor, matches: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Soft-target CLIP loss. text (T, D), image (B, D) normalised; matches (T, B) bool; every text has a match."""
    logits = scale.exp().clamp(max=100) * text @ image.T
    target = matches.float()
    text_loss = -(target / target.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    matched = target.sum(0) > 0
    column = target[:, matched] / target[:, matched].sum(0, keepdim=True)
    image_loss = -(column * F.log_softmax(logits[:, matched], dim=0)).sum(0).mean()
    return 0.5 * (text_loss + image_loss)


def train(
    out: str,
    scenes: int = 2000,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 2e-3,
    validation_scenes: int = 100,
    seed: int = 0,
    max_minutes: Optional[float] = None,
    threads: int = 1,
) -> dict:
    """Train and save the encoder; returns the record written into the file's metadata.

    One intra-op thread by default: the model is small, and on a shared CPU more threads mostly wait.
    """
    started = time.time()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    crops, attributes = build_training_set(scenes)
    objects = np.array([a is not None for a in attributes])
    validation = [generate_concept_scene((CONCEPT_VALIDATION_SEED, i)) for i in range(validation_scenes)]
    model = BundledConceptEncoder()
    side = model.image_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    history = []
    progress = tqdm(range(steps), desc="train concepts")
    loop_start, done = time.time(), 0
    budget = None if max_minutes is None else max(60 * max_minutes - (loop_start - started), 60.0)
    for step in progress:
        # warm-up, then cosine decay over the steps, or over the time budget when that runs out first
        fraction = max(step / steps, 0.0 if budget is None else (time.time() - loop_start) / budget)
        if fraction >= 1.0:
            tqdm.write(f"stopping at step {step}: the {max_minutes}-minute budget is spent")
            break
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 30) * 0.5 * (1 + np.cos(np.pi * fraction))
        model.train()
        picks = rng.choice(len(crops), batch_size, replace=False)
        pixels = augment(crops[picks], rng, side)
        sampled = [sample_caption(attributes[i], rng) for i in picks if objects[i]]
        texts = sorted({text: named for text, named in sampled}.items())
        matches = torch.from_numpy(match_matrix([named for _, named in texts], [attributes[i] for i in picks]))
        tokens, _ = model.tokenize([text for text, _ in texts])
        loss = contrastive_loss(
            F.normalize(model.text_features(tokens), dim=-1),
            F.normalize(model.image_features(pixels), dim=-1),
            matches,
            model.logit_scale,
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done = step + 1
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if done % 200 == 0:
            model.eval()
            record = {"step": done, "loss": round(loss.item(), 4), **caption_retrieval(model, validation)}
            history.append(record)
            tqdm.write(json.dumps(record))
    model.eval()
    final = caption_retrieval(model, validation)
    record = {
        "train_scenes": scenes,
        "train_seed": CONCEPT_TRAIN_SEED,
        "validation_seed": CONCEPT_VALIDATION_SEED,
        "crops": len(crops),
        "steps": done,
        "batch_size": batch_size,
        "lr": lr,
        "threads": threads,
        "validation_top1": final["top1"],
        "minutes": round((time.time() - started) / 60, 1),
    }
    model.save(out, {"training": json.dumps(record), "history": json.dumps(history)})
    print(json.dumps(record))
    return record

