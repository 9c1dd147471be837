"""Checking the JSON bodies of the predict and prefill requests (coordinates in original image pixels)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from promptseg.annotate.errors import bad_request
from promptseg.prompts.validate import check_inside_image
from promptseg.settings import GeneratorSettings, preset

PREFILL_SETTINGS = ("points_per_side", "pred_iou_thresh", "stability_score_thresh")
"""The generator settings a prefill request may give (the others are the preset's)."""
MAX_POINTS = 64


def prefill_defaults(settings: GeneratorSettings) -> dict[str, Any]:
    """The :data:`PREFILL_SETTINGS` of ``settings`` (e.g. ``promptseg.settings.preset_for(model_type,
    purpose="prefill")``), as the defaults of prefill requests."""
    return {name: getattr(settings, name) for name in PREFILL_SETTINGS}


PREFILL_DEFAULTS = prefill_defaults(preset("official", "prefill"))
"""The prefill defaults for SAM (the annotation service's, when not given others)."""


@dataclass(frozen=True)
class ClickPrompt:
    """A checked predict request. points: (N, 2) float32 (x, y); labels: (N,) int64; box: (4,) float32 XYXY."""

    points: Optional[np.ndarray]
    labels: Optional[np.ndarray]
    box: Optional[np.ndarray]
    mask_input: Optional[str]
    multimask: bool


def parse_click(body: Any, width: int, height: int) -> ClickPrompt:
    """The predict body ``{"points", "labels", "box", "mask_input", "multimask"}`` checked against a W x H image."""
    body = checked_object(body, ("points", "labels", "box", "mask_input", "multimask"))
    points, labels = body.get("points") or [], body.get("labels") or []
    if not isinstance(points, list) or not isinstance(labels, list):
        raise bad_request("points must be a list of [x, y] and labels a list of 0/1")
    if len(points) != len(labels):
        raise bad_request(f"points and labels must have the same length, got {len(points)} points and {len(labels)} labels")
    if len(points) > MAX_POINTS:
        raise bad_request(f"at most {MAX_POINTS} points per request, got {len(points)}")
    for index, point in enumerate(points):
        if not (isinstance(point, list) and len(point) == 2 and all(_finite(v) for v in point)):
            raise bad_request(f"points[{index}] must be [x, y] numbers, got {point!r}")
        _inside(f"points[{index}]", point[0], point[1], width, height)
    for index, label in enumerate(labels):
        if label not in (0, 1) or isinstance(label, bool):
            raise bad_request(f"labels[{index}] must be 1 (foreground) or 0 (background), got {label!r}")
    box = body.get("box")
    if box is not None:
        if not (isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)):
            raise bad_request(f"box must be [x0, y0, x1, y1] numbers or null, got {box!r}")
        _inside("box corner (x0, y0)", box[0], box[1], width, height)
        _inside("box corner (x1, y1)", box[2], box[3], width, height)
        if box[2] < box[0] or box[3] < box[1]:
            raise bad_request(f"box must have x0 <= x1 and y0 <= y1, got {box}")
    mask_input = body.get("mask_input")
    if not points and box is None and mask_input is None:
        raise bad_request("give at least one point, a box or a mask_input")
    multimask = body.get("multimask", True)
    if not isinstance(multimask, bool):
        raise bad_request(f"multimask must be true or false, got {multimask!r}")
    return ClickPrompt(
        np.asarray(points, dtype=np.float32).reshape(-1, 2) if points else None,
        np.asarray(labels, dtype=np.int64) if points else None,
        np.asarray(box, dtype=np.float32) if box is not None else None,
        mask_input,
        multimask,
    )


def parse_prefill(body: Any, defaults: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Generator settings of a prefill request (each optional, else from ``defaults``, else
    :data:`PREFILL_DEFAULTS`): points_per_side, pred_iou_thresh, stability_score_thresh."""
    body = checked_object(body if body is not None else {}, PREFILL_SETTINGS)
    settings = {**PREFILL_DEFAULTS, **(defaults or {}), **{k: v for k, v in body.items() if v is not None}}
    side = settings["points_per_side"]
    if not isinstance(side, int) or isinstance(side, bool) or not 1 <= side <= 64:
        raise bad_request(f"points_per_side must be an integer in 1..64, got {side!r}")
    for name in ("pred_iou_thresh", "stability_score_thresh"):
        if not _finite(settings[name]) or not 0 <= settings[name] <= 1:
            raise bad_request(f"{name} must be a number in [0, 1], got {settings[name]!r}")
    return settings


def checked_object(body: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """``body`` when it is a JSON object with no fields beyond ``allowed``; else a 400 naming the problem."""
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"unknown field(s) {unknown}; expected some of {list(allowed)}")
    return body


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _inside(name: str, x: float, y: float, width: int, height: int) -> None:
    try:
        check_inside_image(name, x, y, width, height)  # the one rule and message, the command line's too
    except ValueError as error:
        raise bad_request(str(error)) from None
