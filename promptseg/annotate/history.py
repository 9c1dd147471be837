"""The annotations file's history: every change to an image's objects is an *operation* that can be
applied, reverted and replayed.

An operation is a JSON object that holds what both directions need (so undo and redo never ask what
the state was):

- ``{"op": "add", "annotation": A, "proposal": P | None, "proposal_index": k}``: an accepted object
  (``A`` with its ``category`` name); accepting a stored proposal also takes it off the proposal list.
- ``{"op": "delete", "annotations": [A, ...]}``: objects deleted together.
- ``{"op": "relabel", "ids": [...], "before": [name, ...], "after": name}``: objects given one label.
- ``{"op": "edit", "id": i, "before": {...}, "after": {...}}``: a new mask (``segmentation``, ``area``,
  ``bbox`` and the ``prompt`` behind it) for one object.
- ``{"op": "reject", "proposal": P, "proposal_index": k}``: a proposal turned down.

Each also carries ``seq`` (a number unique in the file) and ``image_id``. The per-image history
(``undo`` and ``redo`` lists of operations) lives in the file's ``promptseg`` section beside the
proposals, so it survives a reload and a restart. :func:`replay` applies a list of operations to a
dataset: the undo list of an image, replayed from an image with no objects, gives its objects.
"""

from __future__ import annotations

import bisect
import copy
from typing import Any, Iterable, Optional

from promptseg.annotate.errors import ApiError

# Bounds on what the file keeps: the last actions of each image, for the images changed most recently.
HISTORY_PER_IMAGE = 100
HISTORY_IMAGES = 16
OPERATIONS = ("add", "delete", "relabel", "edit", "reject")
EDITED_FIELDS = ("segmentation", "area", "bbox", "prompt")


class DroppedOperation(ApiError):
    """409: an operation no longer fits the file and was taken off the history (which changed)."""

    def __init__(self, message: str) -> None:
        super().__init__(409, message)


def section(data: dict[str, Any]) -> dict[str, Any]:
    """The file's ``promptseg`` section (history, proposals), created when missing or malformed."""
    extra = data.get("promptseg")
    if not isinstance(extra, dict):
        extra = data["promptseg"] = {}
    extra.setdefault("next_seq", 1)
    for key in ("history", "proposals"):
        if not isinstance(extra.get(key), dict):
            extra[key] = {}
    if not isinstance(extra.get("history_order"), list):
        extra["history_order"] = []
    return extra


def proposal_list(data: dict[str, Any], image_id: int) -> dict[str, Any]:
    """``{"next_id": n, "items": [...]}``: the stored proposals of one image."""
    proposals = section(data)["proposals"]
    entry = proposals.get(str(image_id))
    if not isinstance(entry, dict) or not isinstance(entry.get("items"), list):
        entry = proposals[str(image_id)] = {"next_id": 1, "items": []}
    return entry


def image_history(data: dict[str, Any], image_id: int) -> dict[str, list[dict[str, Any]]]:
    """``{"undo": [...], "redo": [...]}`` of one image (oldest first)."""
    history = section(data)["history"]
    entry = history.get(str(image_id))
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), list) for k in ("undo", "redo")):
        entry = history[str(image_id)] = {"undo": [], "redo": []}
    return entry


# --------------------------------------------------------------------- categories and lookups
def category_id(data: dict[str, Any], name: str) -> int:
    """The id of the category ``name``, created (with the next free id) when new."""
    for category in data["categories"]:
        if category["name"] == name:
            return category["id"]
    new_id = max((c["id"] for c in data["categories"]), default=0) + 1
    data["categories"].append({"id": new_id, "name": name, "supercategory": name})
    return new_id


def category_names(data: dict[str, Any]) -> dict[int, str]:
    return {c["id"]: c["name"] for c in data["categories"]}


def find(data: dict[str, Any], annotation_id: int) -> dict[str, Any]:
    """The stored annotation ``annotation_id``; 404 when there is none."""
    for annotation in data["annotations"]:
        if annotation["id"] == annotation_id:
            return annotation
    raise ApiError(404, f"unknown annotation id {annotation_id}")


def named(data: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``annotation`` with its ``category`` name beside its ``category_id``."""
    return {**copy.deepcopy(annotation), "category": category_names(data).get(annotation["category_id"], "")}


# --------------------------------------------------------------------- applying operations
def apply(data: dict[str, Any], op: dict[str, Any]) -> None:
    """Carry out ``op`` on ``data`` (forward)."""
    kind = op["op"]
    if kind == "add":
        _insert(data, op["annotation"])
        if op.get("proposal") is not None:
            _take_proposal(data, op["image_id"], op["proposal"]["id"])
    elif kind == "delete":
        for annotation in op["annotations"]:
            _remove(data, annotation["id"])
    elif kind == "relabel":
        new_id = category_id(data, op["after"])
        for annotation_id in op["ids"]:
            find(data, annotation_id)["category_id"] = new_id
    elif kind == "edit":
        _set_fields(find(data, op["id"]), op["after"])
    elif kind == "reject":
        _take_proposal(data, op["image_id"], op["proposal"]["id"])
    else:
        raise ValueError(f"unknown operation {kind!r}; expected one of {OPERATIONS}")


def revert(data: dict[str, Any], op: dict[str, Any]) -> None:
    """Undo ``op`` on ``data``."""
    kind = op["op"]
    if kind == "add":
        _remove(data, op["annotation"]["id"])
        if op.get("proposal") is not None:
            _put_proposal(data, op["image_id"], op["proposal"], op.get("proposal_index", 0))
    elif kind == "delete":
        for annotation in op["annotations"]:
            _insert(data, annotation)
    elif kind == "relabel":
        for annotation_id, name in zip(op["ids"], op["before"]):
            find(data, annotation_id)["category_id"] = category_id(data, name)
    elif kind == "edit":
        _set_fields(find(data, op["id"]), op["before"])
    elif kind == "reject":
        _put_proposal(data, op["image_id"], op["proposal"], op.get("proposal_index", 0))
    else:
        raise ValueError(f"unknown operation {kind!r}; expected one of {OPERATIONS}")


def replay(ops: Iterable[dict[str, Any]], data: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Apply ``ops`` in order to a copy of ``data`` (default: a dataset with no objects) and return it.

    Proposals an operation takes are taken only when they are in ``data``.
    """
    result = copy.deepcopy(data) if data is not None else {"images": [], "annotations": [], "categories": []}
    for op in ops:
        apply(result, op)
    return result


def record(data: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    """Apply a new ``op`` and put it on its image's undo list (which empties the redo list).

    Returns the operation as stored (with its ``seq``). The undo list keeps the last
    :data:`HISTORY_PER_IMAGE` operations; images beyond the :data:`HISTORY_IMAGES` changed most
    recently lose their history (their objects stay).
    """
    extra = section(data)
    op = {"seq": extra["next_seq"], **op}
    apply(data, op)
    extra["next_seq"] += 1
    history = image_history(data, op["image_id"])
    history["undo"].append(op)
    del history["undo"][:-HISTORY_PER_IMAGE]
    history["redo"].clear()
    _touch(extra, op["image_id"])
    return op


def step(data: dict[str, Any], image_id: int, backward: bool, seq: Optional[int] = None) -> dict[str, Any]:
    """Undo (``backward``) or redo the last operation of ``image_id``; returns it.

    ``seq``, when given, must be that operation's number (409 otherwise: another tab changed the image
    since this one looked). An operation that no longer fits the file (an object deleted by hand) is
    dropped from the history with a 409 naming it.
    """
    history = image_history(data, image_id)
    source, target = (history["undo"], history["redo"]) if backward else (history["redo"], history["undo"])
    word = "undo" if backward else "redo"
    if not source:
        raise ApiError(409, f"nothing to {word} on image {image_id}")
    op = source[-1]
    if seq is not None and op["seq"] != seq:
        raise ApiError(409, f"the last action to {word} on image {image_id} is #{op['seq']} ({describe(op)}), "
                            f"not #{seq}: the image changed in another tab; reload it")
    missing, taken = _needs(op, backward)
    ids = {a["id"] for a in data["annotations"]}
    problem = ([f"annotation #{i} is no longer in the file" for i in missing if i not in ids]
               + [f"annotation id #{i} is taken" for i in taken if i in ids])
    if problem:
        source.pop()
        raise DroppedOperation(f"cannot {word} #{op['seq']} ({describe(op)}): {problem[0]}; it was dropped from the history")
    (revert if backward else apply)(data, op)
    source.pop()
    target.append(op)
    _touch(section(data), image_id)
    return op


def summary(data: dict[str, Any], image_id: int) -> dict[str, list[dict[str, Any]]]:
    """The image's history as ``{"undo": [...], "redo": [...]}`` of ``{"seq", "op", "ids", "text"}``
    (oldest first; the last of each list is the next to undo / redo)."""
    history = image_history(data, image_id)
    return {key: [{"seq": op["seq"], "op": op["op"], "ids": affected(op), "text": describe(op)} for op in history[key]]
            for key in ("undo", "redo")}


def affected(op: dict[str, Any]) -> list[int]:
    """The annotation ids an operation touches."""
    if op["op"] == "add":
        return [op["annotation"]["id"]]
    if op["op"] == "delete":
        return [a["id"] for a in op["annotations"]]
    if op["op"] == "relabel":
        return list(op["ids"])
    if op["op"] == "edit":
        return [op["id"]]
    return []


def describe(op: dict[str, Any]) -> str:
    """A short text for the page: 'accept #4 (car)', 'delete #2, #3', ..."""
    ids = ", ".join(f"#{i}" for i in affected(op))
    if op["op"] == "add":
        source = " from a proposal" if op.get("proposal") is not None else ""
        return f"accept {ids} ({op['annotation']['category']}){source}"
    if op["op"] == "delete":
        return f"delete {ids}"
    if op["op"] == "relabel":
        return f"relabel {ids} as {op['after']}"
    if op["op"] == "edit":
        return f"edit {ids}"
    return f"reject proposal {op['proposal']['id']}"


def edited_fields(annotation: dict[str, Any]) -> dict[str, Any]:
    """The fields an edit replaces, copied (``prompt`` only when the annotation has one)."""
    return {key: copy.deepcopy(annotation[key]) for key in EDITED_FIELDS if key in annotation}


# --------------------------------------------------------------------- helpers
def _needs(op: dict[str, Any], backward: bool) -> tuple[list[int], list[int]]:
    """(ids that must be in the file, ids that must not) for ``op`` to be applied or reverted."""
    ids = affected(op)
    if op["op"] == "add":
        return (ids, []) if backward else ([], ids)
    if op["op"] == "delete":
        return ([], ids) if backward else (ids, [])
    return ids, []


def _insert(data: dict[str, Any], annotation: dict[str, Any]) -> None:
    """Put an operation's annotation back into the file (kept sorted by id); 409 if its id is taken."""
    annotations = data["annotations"]
    ids = [a["id"] for a in annotations]
    if annotation["id"] in ids:
        raise ApiError(409, f"annotation id {annotation['id']} is already in the file")
    entry = {k: copy.deepcopy(v) for k, v in annotation.items() if k != "category"}
    entry["category_id"] = category_id(data, annotation["category"])
    position = bisect.bisect(ids, annotation["id"]) if ids == sorted(ids) else len(annotations)
    annotations.insert(position, entry)


def _remove(data: dict[str, Any], annotation_id: int) -> None:
    data["annotations"].remove(find(data, annotation_id))


def _set_fields(annotation: dict[str, Any], fields: dict[str, Any]) -> None:
    for key in EDITED_FIELDS:
        if key in fields:
            annotation[key] = copy.deepcopy(fields[key])
        else:
            annotation.pop(key, None)


def _take_proposal(data: dict[str, Any], image_id: int, proposal_id: int) -> None:
    items = proposal_list(data, image_id)["items"]
    items[:] = [p for p in items if p.get("id") != proposal_id]


def _put_proposal(data: dict[str, Any], image_id: int, proposal: dict[str, Any], index: int) -> None:
    items = proposal_list(data, image_id)["items"]
    if not any(p.get("id") == proposal["id"] for p in items):
        items.insert(min(max(int(index), 0), len(items)), copy.deepcopy(proposal))


def _touch(extra: dict[str, Any], image_id: int) -> None:
    """Mark ``image_id`` as changed most recently; forget the history of images beyond the bound."""
    order = [i for i in extra["history_order"] if i != image_id] + [image_id]
    for old in order[:-HISTORY_IMAGES]:
        extra["history"].pop(str(old), None)
    extra["history_order"] = order[-HISTORY_IMAGES:]
