"""Evaluation of the promptable task: single click, box, and corrective-click rounds.

The protocol is deterministic. The first click of an instance is the pixel of
its own region (for a whole, the part not covered by its parts) farthest from
that region's boundary; the mask scored is the one of the 3 the model ranks
best by predicted IoU. A box prompt is the instance's tight box with a single
output. A corrective round clicks the pixel farthest from the boundary of the
current error region (foreground on a miss, background on a false positive),
adds it to the previous clicks, feeds back the previous low-res logits, and
takes the single output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.data.sample import Sample
from promptseg.modeling import Sam
from promptseg.predictor import SamPredictor
from promptseg.masks import mask_iou
from promptseg.masks import deepest_points, mask_boxes_xyxy


@dataclass
class EvaluationResult:
    """Mean IoU over instances for each protocol.

    Attributes:
        point_miou: one positive click, best-ranked of 3 masks.
        box_miou: tight box, single mask.
        corrective_miou: after the first click (index 0) and after each corrective round.
        instances: number of instances scored.
    """

    point_miou: float
    box_miou: float
    corrective_miou: list[float] = field(default_factory=list)
    instances: int = 0

    def as_dict(self) -> dict[str, float]:
        metrics = {"point_miou": self.point_miou, "box_miou": self.box_miou, "instances": float(self.instances)}
        metrics.update({f"corrective_miou_{i}": value for i, value in enumerate(self.corrective_miou)})
        return metrics


@dataclass
class _ImageSession:
    """The scored instances of one image and their interactive state."""

    targets: torch.Tensor  # (P, H, W) bool
    clicks: list[np.ndarray]  # per instance (N, 2) float64
    labels: list[np.ndarray]  # per instance (N,) int64
    masks: torch.Tensor | None = None  # (P, H, W) bool current prediction
    logits: np.ndarray | None = None  # (P, h, w) float32 low-res logits of the current prediction

    def prompts(self, with_history: bool) -> list[dict]:
        return [
            {"point_coords": c, "point_labels": l, **({"mask_input": self.logits[i][None]} if with_history else {})}
            for i, (c, l) in enumerate(zip(self.clicks, self.labels))
        ]

    def add_error_clicks(self) -> None:
        errors = self.masks ^ self.targets
        points = deepest_points(errors).long()
        labels = self.targets[torch.arange(len(points)), points[:, 1], points[:, 0]].long().numpy()
        for index, (point, label) in enumerate(zip(points.double().numpy(), labels)):
            self.clicks[index] = np.concatenate([self.clicks[index], point[None]])
            self.labels[index] = np.concatenate([self.labels[index], [label]])


def _session(sample: Sample) -> _ImageSession:
    """Instances whose own region is non-empty, each with its first (deepest) click."""
    own = torch.from_numpy(np.stack([sample.own_region(i) for i in range(len(sample.masks))])) if len(sample.masks) else torch.zeros((0, 1, 1), dtype=torch.bool)
    keep = own.flatten(1).any(1)
    first = deepest_points(own[keep]).double().numpy()
    return _ImageSession(
        targets=torch.from_numpy(sample.masks)[keep] if len(sample.masks) else own,
        clicks=[point[None] for point in first],
        labels=[np.ones(1, dtype=np.int64) for _ in first],
    )


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


@torch.no_grad()
def evaluate(
    model: Sam,
    samples: Sequence[Sample],
    corrective_rounds: int = 3,
    images_per_batch: int = 8,
    progress: bool = False,
) -> EvaluationResult:
    """Score ``model`` on ``samples`` with the protocols of the module docstring."""
    predictor = SamPredictor(model, prompt_batch_size=256)
    point_ious: list[float] = []
    box_ious: list[float] = []
    round_ious: list[list[float]] = [[] for _ in range(corrective_rounds)]
    starts = range(0, len(samples), images_per_batch)
    for start in tqdm(starts, desc="evaluating", unit="batch", disable=not progress):
        chunk = [samples[i] for i in range(start, min(start + images_per_batch, len(samples)))]
        predictor.set_images([sample.image for sample in chunk], batch_size=images_per_batch)
        sessions = [_session(sample) for sample in chunk]

        results = predictor.predict_batch([s.prompts(with_history=False) for s in sessions], multimask_output=True)
        for session, (masks, scores, low_res) in zip(sessions, results):
            best = scores.argmax(axis=1)
            rows = np.arange(len(best))
            session.masks, session.logits = torch.from_numpy(masks[rows, best]), low_res[rows, best]
            point_ious.extend(mask_iou(session.masks, session.targets).tolist())

        box_prompts = [[{"box": box} for box in mask_boxes_xyxy(s.targets).double().numpy()] for s in sessions]
        for session, (masks, _, _) in zip(sessions, predictor.predict_batch(box_prompts, multimask_output=False)):
            box_ious.extend(mask_iou(torch.from_numpy(masks[:, 0]), session.targets).tolist())

        for ious in round_ious:
            for session in sessions:
                session.add_error_clicks()
            results = predictor.predict_batch([s.prompts(with_history=True) for s in sessions], multimask_output=False)
            for session, (masks, _, low_res) in zip(sessions, results):
                session.masks, session.logits = torch.from_numpy(masks[:, 0]), low_res[:, 0]
                ious.extend(mask_iou(session.masks, session.targets).tolist())
    return EvaluationResult(
        point_miou=_mean(point_ious),
        box_miou=_mean(box_ious),
        corrective_miou=[_mean(point_ious)] + [_mean(ious) for ious in round_ious],
        instances=len(point_ious),
    )
