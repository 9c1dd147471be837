"""Measurements of concept encoders on captioned scenes."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from promptseg.data.concepts import ConceptScene
from promptseg.text.crops import object_crop
from promptseg.text.encoder import ConceptEncoder


@torch.no_grad()
def caption_retrieval(encoder: ConceptEncoder, scenes: Sequence[ConceptScene], batch_size: int = 256) -> dict[str, float]:
    """Caption retrieval top-1 on every instance crop of ``scenes``.

    Each crop (the default :func:`promptseg.text.object_crop`) is scored against every distinct
    caption (fill, colour, shape) of the crops; it is right when its own caption scores highest.

    Returns:
        {"top1": fraction right, "crops": count, "captions": distinct captions}.
    """
    crops, captions = [], []
    for scene in scenes:
        for index, mask in enumerate(scene.masks):
            crops.append(object_crop(scene.image, mask))
            captions.append(scene.caption(index))
    candidates = sorted(set(captions))
    text = encoder.encode_text(candidates)
    images = torch.cat([encoder.encode_images(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)])
    best = (images @ text.T).argmax(dim=1).cpu().numpy()
    truth = np.array([candidates.index(c) for c in captions])
    return {"top1": float((best == truth).mean()), "crops": len(crops), "captions": len(candidates)}


def match_instances(predicted: np.ndarray, truth: np.ndarray, iou_thresh: float = 0.5) -> int:
    """True positives of a one-to-one greedy matching (best IoU first) of (P, H, W) predicted masks
    to (G, H, W) ground-truth masks at IoU >= ``iou_thresh``."""
    if len(predicted) == 0 or len(truth) == 0:
        return 0
    p = predicted.reshape(len(predicted), -1).astype(np.float32)
    g = truth.reshape(len(truth), -1).astype(np.float32)
    inter = p @ g.T
    iou = inter / (p.sum(1)[:, None] + g.sum(1)[None, :] - inter)
    matched, used_p, used_g = 0, set(), set()
    for flat in np.argsort(-iou, axis=None):
        i, j = divmod(int(flat), len(truth))
        if iou[i, j] < iou_thresh:
            break
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            matched += 1
    return matched


def concept_queries(scene: ConceptScene, rng: np.random.Generator) -> str:
    """A query naming colour and shape of a random top-level instance of ``scene``."""
    top = np.flatnonzero(scene.parents < 0)
    attributes = scene.attributes[int(rng.choice(top))]
    return f"{attributes.colour} {attributes.shape}"
