"""The request bodies of the annotation API as JSON Schema, for its OpenAPI description
(``GET /api/openapi.json``; FastAPI writes the rest from the routes).

The endpoints read their bodies themselves (:mod:`promptseg.annotate.bodies`,
:mod:`promptseg.annotate.prompts`), which check more than a schema can (coordinates inside the image,
RLE runs adding up to H x W, labels); the schemas describe the shapes, for clients and for the
schema-driven fault tests (``tests/annotate/test_schema_fuzz.py``).
"""

from __future__ import annotations

from typing import Any

OPENAPI_PATH = "/api/openapi.json"

_NUMBER = {"type": "number"}
_LABEL = {"type": ["string", "null"], "description": "a class name, or null: unlabelled"}
_RLE = {
    "type": "object",
    "description": "COCO RLE of the image's size: counts a pycocotools string or a list of runs",
    "properties": {
        "size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "counts": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer", "minimum": 0}}]},
    },
    "required": ["size", "counts"],
}
_POLYGON = {
    "type": "array", "minItems": 1, "description": "rings [x0, y0, x1, y1, ...] in image pixels",
    "items": {"type": "array", "items": _NUMBER, "minItems": 6},
}
_CLICKS = {
    "points": {"type": "array", "maxItems": 64, "items": {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2}},
    "labels": {"type": "array", "maxItems": 64, "items": {"enum": [0, 1]}},
    "box": {"oneOf": [{"type": "null"}, {"type": "array", "items": _NUMBER, "minItems": 4, "maxItems": 4}]},
}
_PROMPT = {"type": ["object", "null"], "properties": _CLICKS, "additionalProperties": False}
_TOKEN = {"type": ["string", "null"], "description": "a mask_input token from a predict response"}
_FILL_RULE = {"enum": ["union", "evenodd"]}
_IDS = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return {**schema, "required": list(required)} if required else schema


BODIES: dict[str, tuple[dict[str, Any], bool]] = {
    "predict": (_object({**_CLICKS, "mask_input": _TOKEN, "multimask": {"type": "boolean"}}), True),
    "accept": (_object({"rle": _RLE, "polygon": _POLYGON, "fill_rule": _FILL_RULE, "proposal": {"type": "integer"},
                        "category": _LABEL, "score": _NUMBER, "prompt": _PROMPT, "mask_input": _TOKEN},
                       ("category",)), True),
    "edit": (_object({"rle": _RLE, "polygon": _POLYGON, "fill_rule": _FILL_RULE, "prompt": _PROMPT,
                      "mask_input": _TOKEN}), True),
    "prefill": (_object({"points_per_side": {"type": "integer", "minimum": 1, "maximum": 64},
                         "pred_iou_thresh": {"type": "number", "minimum": 0, "maximum": 1},
                         "stability_score_thresh": {"type": "number", "minimum": 0, "maximum": 1}}), False),
    "relabel_many": (_object({"ids": _IDS, "category": _LABEL}, ("ids", "category")), True),
    "delete_many": (_object({"ids": _IDS}, ("ids",)), True),
    "step": (_object({"seq": {"type": ["integer", "null"]}}), False),
    "state": (_object({"state": {"enum": ["new", "in_progress", "done", "skipped"]}}, ("state",)), True),
    "relabel": (_object({"category": _LABEL}, ("category",)), True),
}
"""Each endpoint's body: (JSON Schema, whether a body is required)."""


def request_body(name: str) -> dict[str, Any]:
    """The ``openapi_extra`` of an endpoint whose body is ``BODIES[name]``."""
    schema, required = BODIES[name]
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}
