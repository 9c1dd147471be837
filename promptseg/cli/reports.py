"""Writing a prediction to disk: one PNG per mask, an overlay, and a JSON summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from promptseg.masks import mask_areas, mask_boxes_xyxy
from promptseg.cli.visualize import overlay


def write_prediction(
    out_dir: Path,
    image: np.ndarray,
    masks: np.ndarray,
    scores: np.ndarray,
    points: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    boxes: Sequence[Sequence[float]] = (),
    info: Optional[dict[str, Any]] = None,
    ground_truth_iou: Optional[Sequence[float]] = None,
) -> dict[str, Any]:
    """Write ``mask_<i>.png``, ``overlay.png`` and ``result.json`` into ``out_dir``.

    Args:
        image: (H, W, 3) uint8 RGB.
        masks: (N, H, W) bool; scores: (N,) predicted IoU.
        points, labels, boxes: the prompts, drawn on the overlay.
        info: extra fields for the JSON (image, model, prompt...).
        ground_truth_iou: (N,) IoU with known ground truth, when there is one.
    Returns:
        The JSON content.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tensor = torch.from_numpy(masks)
    records = []
    for index, (mask, score, area, box) in enumerate(
        zip(masks, scores, mask_areas(tensor).tolist(), mask_boxes_xyxy(tensor).tolist())
    ):
        name = f"mask_{index}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(out_dir / name)
        record = {"file": name, "score": float(score), "area": int(area), "box_xyxy": box}
        if ground_truth_iou is not None:
            record["ground_truth_iou"] = float(ground_truth_iou[index])
        records.append(record)
    overlay(image, masks, points, labels, boxes).save(out_dir / "overlay.png")
    result = {**(info or {}), "image_size": list(image.shape[:2]), "masks": records}
    (out_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result
