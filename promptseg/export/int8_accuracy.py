"""How closely an approximate image encoder (the int8 one) agrees with the exact one: the IoU of the
masks the same clicks give through either, on images the model was not trained on."""

from __future__ import annotations

import os
from typing import Sequence, Union

import numpy as np

from promptseg.data.synthetic import HELD_OUT_SEED, generate_scene
from promptseg.encoders import ImageEncoder
from promptseg.encoders.onnxruntime import OnnxRuntimeImageEncoder
from promptseg.modeling import Sam
from promptseg.predictor import SamPredictor

INT8_MIN_MASK_IOU = 0.98
"""The int8 encoder is warned about when its mean mask IoU against float32 is below this."""
CHECK_SCENES = 3
"""Held-out synthetic scenes :func:`measure_int8_agreement` scores (each costs two encodes)."""
PathLike = Union[str, "os.PathLike[str]"]


def held_out_samples(count: int, size: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, clicks) of the first ``count`` held-out synthetic scenes (``HELD_OUT_SEED``, never
    trained on): (size, size, 3) uint8 and one (x, y) click per object, deep inside it."""
    scenes = [generate_scene((HELD_OUT_SEED, index), size=size) for index in range(count)]
    return [(scene.image, scene.first_clicks()) for scene in scenes]


def grid_clicks(height: int, width: int, per_side: int = 4) -> np.ndarray:
    """(per_side**2, 2) (x, y) clicks on a regular grid inside an (height, width) image."""
    steps = (np.arange(per_side) + 0.5) / per_side
    xs, ys = np.meshgrid(steps * width, steps * height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def mask_agreement(
    model: Sam,
    reference: ImageEncoder,
    candidate: ImageEncoder,
    samples: Sequence[tuple[np.ndarray, np.ndarray]],
) -> dict[str, float]:
    """IoU of the masks each click gives through ``candidate`` against ``reference`` (same decoder).

    Args:
        samples: (image (H, W, 3) uint8 RGB, clicks (K, 2) (x, y)) pairs; each click is one
            foreground point, and all three multimask outputs are compared.
    Returns:
        ``{"mean_mask_iou", "min_mask_iou", "masks", "images"}``; a pair of empty masks counts as IoU 1.
    """
    exact = SamPredictor(model, encoder=reference)
    approximate = SamPredictor(model, encoder=candidate)
    ious = []
    for image, clicks in samples:
        prompts = [{"point_coords": click[None], "point_labels": np.array([1])} for click in clicks]
        if not prompts:
            continue
        exact.set_image(image)
        approximate.set_image(image)
        expected = exact.predict_many(prompts)[0].reshape(len(prompts) * 3, -1)
        actual = approximate.predict_many(prompts)[0].reshape(len(prompts) * 3, -1)
        union = (expected | actual).sum(axis=1)
        overlap = (expected & actual).sum(axis=1)
        ious.append(np.where(union > 0, overlap / np.maximum(union, 1), 1.0))
    values = np.concatenate(ious) if ious else np.ones(0)
    return {
        "mean_mask_iou": float(values.mean()) if len(values) else 1.0,
        "min_mask_iou": float(values.min()) if len(values) else 1.0,
        "masks": int(len(values)),
        "images": len(samples),
    }


def measure_int8_agreement(model: Sam, fp32_path: PathLike, int8_path: PathLike, scenes: int = CHECK_SCENES) -> dict:
    """:func:`mask_agreement` of the int8 encoder graph against the float32 one on ``scenes`` held-out
    synthetic scenes; the result also records ``"scenes"``."""
    reference = OnnxRuntimeImageEncoder(model, fp32_path)
    candidate = OnnxRuntimeImageEncoder(model, int8_path, precision="int8")
    return {**mask_agreement(model, reference, candidate, held_out_samples(scenes)), "scenes": scenes}
