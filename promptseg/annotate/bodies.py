"""Checking the JSON bodies of the requests that change objects (accept, edit, relabel, delete, undo,
state); each problem is a 400 naming what was expected and what came."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from promptseg.annotate.coco_masks import FILL_RULES
from promptseg.annotate.errors import ApiError, bad_request
from promptseg.annotate.polygon_input import checked_polygon
from promptseg.annotate.prompts import checked_object, parse_click


@dataclass(frozen=True)
class MaskBody:
    """A mask given as ``rle`` (as sent) or ``polygon`` (its rings checked and clipped to the image:
    (K, 2) float64 arrays) with its ``fill_rule``, or a stored ``proposal``; the ``prompt`` behind it
    (clicks, as a predict body's points/labels/box) and its ``mask_input`` token."""

    rle: Any = None
    polygon: Any = None
    fill_rule: str = "union"
    proposal: Optional[int] = None
    prompt: Optional[dict[str, Any]] = None
    mask_input: Optional[str] = None


def parse_accept(body: Any, width: int, height: int) -> tuple[MaskBody, Optional[str]]:
    """``{"rle" | "polygon" | "proposal", "category", "prompt"?, "mask_input"?, "score"?}`` -> (mask, category);
    category None means unlabelled."""
    body = checked_object(body, ("rle", "polygon", "fill_rule", "proposal", "category", "score", "prompt", "mask_input"))
    given = [key for key in ("rle", "polygon", "proposal") if key in body]
    if len(given) != 1:
        raise bad_request("give exactly one of 'rle' (COCO RLE), 'polygon' (list of [x0, y0, x1, y1, ...]) "
                          f"and 'proposal' (a stored proposal's id), got {given or 'none'}")
    if "category" not in body:
        raise bad_request("missing 'category' (the object's label, or null for none)")
    proposal = body.get("proposal")
    if proposal is not None and not _is_id(proposal):
        raise bad_request(f"proposal must be a proposal id (an integer), got {proposal!r}")
    return _mask_body(body, width, height), body["category"]


def parse_edit(body: Any, width: int, height: int) -> MaskBody:
    """``{"rle" | "polygon", "fill_rule"?, "prompt"?, "mask_input"?}``: an object's new mask."""
    body = checked_object(body, ("rle", "polygon", "fill_rule", "prompt", "mask_input"))
    if ("rle" in body) == ("polygon" in body):
        raise bad_request("give exactly one of 'rle' (COCO RLE) and 'polygon' (list of [x0, y0, x1, y1, ...])")
    return _mask_body(body, width, height)


def parse_ids(body: Any, with_category: bool) -> tuple[list[int], Optional[str]]:
    """``{"ids": [...]}`` (and ``"category"`` when ``with_category``) -> (ids, category)."""
    keys = ("ids", "category") if with_category else ("ids",)
    body = checked_object(body, keys)
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(_is_id(i) for i in ids):
        raise bad_request(f"ids must be a non-empty list of annotation ids, got {ids!r}")
    if with_category and "category" not in body:
        raise bad_request("missing 'category' (the new label, or null for none)")
    return ids, body.get("category") if with_category else None


def parse_step(body: Any) -> Optional[int]:
    """An undo/redo body: nothing, or ``{"seq": n}`` (the action the client expects to undo/redo)."""
    if body is None:
        return None
    body = checked_object(body, ("seq",))
    seq = body.get("seq")
    if seq is not None and not _is_id(seq):
        raise bad_request(f"seq must be an action's number (an integer) or null, got {seq!r}")
    return seq


def parse_state(body: Any) -> str:
    """``{"state": "new" | "in_progress" | "done" | "skipped"}``."""
    body = checked_object(body, ("state",))
    if not isinstance(body.get("state"), str):
        raise bad_request(f"state must be a string, got {body.get('state')!r}")
    return body["state"]


def parse_prompt(value: Any, width: int, height: int) -> Optional[dict[str, Any]]:
    """A stored prompt ``{"points", "labels", "box"}`` (checked as a predict body), or None."""
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= {"points", "labels", "box"}:
        raise bad_request(f'prompt must be {{"points", "labels", "box"}} of the clicks behind the mask, got {str(value)[:80]}')
    try:
        click = parse_click(dict(value), width, height)
    except ApiError as error:
        raise bad_request(f"prompt: {error.message}") from None
    return {
        "points": [] if click.points is None else click.points.tolist(),
        "labels": [] if click.labels is None else click.labels.tolist(),
        "box": None if click.box is None else click.box.tolist(),
    }


def _mask_body(body: dict[str, Any], width: int, height: int) -> MaskBody:
    fill_rule = body.get("fill_rule", "union")
    if fill_rule not in FILL_RULES:
        raise bad_request(f"fill_rule must be one of {list(FILL_RULES)}, got {fill_rule!r}")
    if "fill_rule" in body and "polygon" not in body:
        raise bad_request("fill_rule goes with a 'polygon'")
    polygon = checked_polygon(body["polygon"], height, width) if "polygon" in body else None
    mask_input = body.get("mask_input")
    if mask_input is not None and not isinstance(mask_input, str):
        raise bad_request(f"mask_input must be a token string from a predict response or null, got {type(mask_input).__name__}")
    return MaskBody(body.get("rle"), polygon, fill_rule, body.get("proposal"),
                    parse_prompt(body.get("prompt"), width, height), mask_input)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
