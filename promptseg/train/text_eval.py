"""Measuring text prompts on captioned synthetic scenes (the figures of the bundled text model's card).

* Text only -> mask: for each object whose caption is unique in its scene, the single-mask
  prediction for its caption, IoU with its mask; the mean over objects.
* Text + one click on a nested part/whole pair: a click on the part (its deepest point) is
  ambiguous between part and whole; with the caption of the part, or of the whole, the prediction
  should be the named level: its IoU with the named mask beats its IoU with the other one.
  The click alone (single-mask output) is reported beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.masks import deepest_points
from promptseg.predictor import SamPredictor


@dataclass
class TextPromptMetrics:
    """Attributes:
        text_miou: mean IoU of text-only predictions on objects with a unique caption.
        text_objects: how many such objects.
        level_accuracy: share of (pair, named level) cases where text + click picks the named level.
        level_cases: how many cases (two per part/whole pair).
        click_alone_whole_share: share of pairs where the click alone gives the whole (not the part).
    """

    text_miou: float
    text_objects: int
    level_accuracy: float
    level_cases: int
    click_alone_whole_share: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _iou(prediction: np.ndarray, target: np.ndarray) -> float:
    union = np.logical_or(prediction, target).sum()
    return float(np.logical_and(prediction, target).sum() / union) if union else 0.0


def evaluate_text_prompts(predictor: SamPredictor, scenes: Iterable, progress: bool = False) -> TextPromptMetrics:
    """Score ``predictor`` (built with ``text=``) on captioned scenes (``ConceptScene``)."""
    text_ious: list[float] = []
    picked: list[bool] = []
    click_whole: list[bool] = []
    for scene in tqdm(list(scenes), desc="text prompts", unit="scene", disable=not progress):
        predictor.set_image(scene.image)
        unique = scene.unique_captions()
        if unique:
            indices = list(unique)
            masks = predictor.predict_many([{"text": unique[i]} for i in indices], multimask_output=False)[0][:, 0]
            text_ious.extend(_iou(mask, scene.masks[i]) for mask, i in zip(masks, indices))
        for part in np.flatnonzero(scene.parents >= 0):
            whole = int(scene.parents[part])
            if not scene.masks[part].any():
                continue
            x, y = deepest_points(torch.from_numpy(scene.masks[part][None]))[0].tolist()
            click = {"point_coords": np.array([[x, y]], dtype=np.float64), "point_labels": np.array([1])}
            prompts = [{"text": scene.caption(part), **click}, {"text": scene.caption(whole), **click}, click]
            masks = predictor.predict_many(prompts, multimask_output=False)[0][:, 0]
            for mask, named, other in ((masks[0], part, whole), (masks[1], whole, part)):
                picked.append(_iou(mask, scene.masks[named]) > _iou(mask, scene.masks[other]))
            click_whole.append(_iou(masks[2], scene.masks[whole]) > _iou(masks[2], scene.masks[part]))
    return TextPromptMetrics(
        text_miou=float(np.mean(text_ious)) if text_ious else float("nan"),
        text_objects=len(text_ious),
        level_accuracy=float(np.mean(picked)) if picked else float("nan"),
        level_cases=len(picked),
        click_alone_whole_share=float(np.mean(click_whole)) if click_whole else float("nan"),
    )
