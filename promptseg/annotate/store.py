"""The annotations file: a COCO dataset written atomically after every change, resumable, safe for
concurrent requests (and even for two servers on the same file).

Every change runs under a lock (a thread lock, plus an ``fcntl`` lock on ``<out>.lock``) as
read-merge-write: if the file changed on disk since this store last wrote it, it is read again
first, so nothing another writer stored is overwritten; then the change is applied and the whole
dataset written atomically (:func:`promptseg.io.write_json_atomically`: a temporary file, flushed to
disk and renamed over ``--out``, which keeps its mode).
"""

from __future__ import annotations

import copy
import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from promptseg.annotate import history
from promptseg.annotate.coco_masks import area_and_bbox
from promptseg.annotate.errors import bad_request, not_found
from promptseg.annotate.images import ImageFile
from promptseg.annotate.labels import checked_labels, normalised_label
from promptseg.io import CocoRle, remove_orphaned_temps, write_json_atomically

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

INFO = {"description": "promptseg annotate", "version": "1.0"}
STATES = ("new", "in_progress", "done", "skipped")
UNLABELLED = "unlabelled"  # the category of an object accepted without a label


class AnnotationStore:
    """COCO images, categories and annotations, kept in memory and on disk.

    Image ids stay those of the file (matched by file name) when a session resumes; new files get new ids.
    Annotation ids are never reused (the next one is kept in the file's ``info``). Every change to an
    image's objects is an operation of :mod:`promptseg.annotate.history`, kept in the image's undo list;
    each image has a state (:data:`STATES`), and its pre-fill proposals are kept until accepted or rejected.
    """

    def __init__(self, path: Path, images: Sequence[ImageFile], labels: Optional[Sequence[str]] = None) -> None:
        """
        Args:
            path: the COCO file (created, or resumed when it exists).
            images: the images to list (those already in the file keep their ids).
            labels: a fixed list of class names (categories created in this order); objects may then
                only take these names (or none: :data:`UNLABELLED`). None: any label.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.removed_temps = remove_orphaned_temps(self.path)
        self.labels = checked_labels(labels) if labels is not None else None
        self._lock = threading.RLock()
        self._stamp: Optional[tuple[int, int, int]] = None
        self._images = list(images)
        self._data = self._empty()
        with self._locked():
            if self.path.exists():
                self._data = self._read()
            self._add_images(images)
            history.section(self._data)
            for name in self.labels or ():
                history.category_id(self._data, name)
            self._write()

    # ------------------------------------------------------------- reading
    def image_id(self, file_name: str) -> int:
        with self._lock:
            return next(image["id"] for image in self._data["images"] if image["file_name"] == file_name)

    def annotations(self, image_id: Optional[int] = None) -> list[dict[str, Any]]:
        """Copies of the stored annotations (of one image), each with its ``category`` name added."""
        with self._locked():
            self._refresh()
            return self._named(image_id)

    def counts(self) -> dict[int, int]:
        """Annotations per image id."""
        with self._locked():
            self._refresh()
            counts: dict[int, int] = {}
            for annotation in self._data["annotations"]:
                counts[annotation["image_id"]] = counts.get(annotation["image_id"], 0) + 1
            return counts

    def states(self) -> dict[int, str]:
        """The state of every image (one of :data:`STATES`)."""
        with self._locked():
            self._refresh()
            annotated = {a["image_id"] for a in self._data["annotations"]}
            return {image["id"]: _state(image, image["id"] in annotated) for image in self._data["images"]}

    def categories(self) -> list[dict[str, Any]]:
        with self._locked():
            self._refresh()
            return copy.deepcopy(self._data["categories"])

    def export(self) -> dict[str, Any]:
        """The COCO dataset (a copy)."""
        with self._locked():
            self._refresh()
            return copy.deepcopy(self._data)

    def snapshot(self, image_id: int) -> dict[str, Any]:
        """What the page shows of one image: ``{"image_id", "state", "annotations", "proposals", "history"}``."""
        with self._locked():
            self._refresh()
            image = self._image(image_id)
            annotations = self._named(image_id)
            return {
                "image_id": image_id,
                "state": _state(image, bool(annotations)),
                "annotations": annotations,
                "proposals": copy.deepcopy(history.proposal_list(self._data, image_id)["items"]),
                "history": history.summary(self._data, image_id),
            }

    def annotation(self, annotation_id: int) -> dict[str, Any]:
        """A copy of one stored annotation with its ``category`` name; 404 when there is none."""
        with self._locked():
            self._refresh()
            return history.named(self._data, history.find(self._data, annotation_id))

    def proposal(self, image_id: int, proposal_id: int) -> dict[str, Any]:
        """A copy of the stored proposal ``proposal_id`` of ``image_id``; 404 when there is none."""
        with self._locked():
            self._refresh()
            return copy.deepcopy(self._proposal(image_id, proposal_id)[1])

    # ------------------------------------------------------------- changes
    def add(
        self,
        image_id: int,
        rle: CocoRle,
        category: Optional[str],
        extra: Optional[dict[str, Any]] = None,
        prompt: Optional[dict[str, Any]] = None,
        proposal_id: Optional[int] = None,
    ) -> dict[str, Any]:
        """Store a mask of ``image_id`` labelled ``category`` (None: :data:`UNLABELLED`); returns the
        stored annotation. ``prompt`` (the clicks behind the mask) is kept with it; ``proposal_id``
        takes that stored proposal off the image's list in the same change."""
        name = self._name(category)
        area, bbox = area_and_bbox(rle)
        if area == 0:
            raise bad_request("the mask is empty (0 pixels); nothing to store")
        with self._locked():
            self._refresh()
            self._image(image_id)
            index, proposal = (0, None) if proposal_id is None else self._proposal(image_id, proposal_id)
            annotation = {
                "id": self._data["info"]["next_annotation_id"],
                "image_id": image_id,
                "segmentation": rle,
                "area": area,
                "bbox": bbox,
                "iscrowd": 0,
                **(extra or {}),
                **({"prompt": prompt} if prompt is not None else {}),
                "category": name,
            }
            self._data["info"]["next_annotation_id"] += 1
            self._change({"op": "add", "image_id": image_id, "annotation": annotation,
                          "proposal": proposal, "proposal_index": index})
            return history.named(self._data, history.find(self._data, annotation["id"]))

    def relabel(self, annotation_id: int, category: Optional[str]) -> dict[str, Any]:
        """Give one object a new label; returns it."""
        return self.relabel_many(None, [annotation_id], category)[0]

    def relabel_many(self, image_id: Optional[int], ids: Sequence[int], category: Optional[str]) -> list[dict[str, Any]]:
        """Give several objects of ``image_id`` (None: that of the first) one label, as one change; returns them."""
        name = self._name(category)
        with self._locked():
            self._refresh()
            annotations = self._of_image(image_id, ids)
            names = history.category_names(self._data)
            self._change({"op": "relabel", "image_id": annotations[0]["image_id"], "ids": list(ids),
                          "before": [names.get(a["category_id"], UNLABELLED) for a in annotations], "after": name})
            return [history.named(self._data, a) for a in annotations]

    def delete(self, annotation_id: int) -> dict[str, Any]:
        """Delete one object; returns it (as it was)."""
        removed = self.delete_many(None, [annotation_id])[0]
        return {k: v for k, v in removed.items() if k != "category"}

    def delete_many(self, image_id: Optional[int], ids: Sequence[int]) -> list[dict[str, Any]]:
        """Delete several objects of ``image_id`` (None: that of the first) as one change; returns them
        (with ``category`` names)."""
        with self._locked():
            self._refresh()
            annotations = self._of_image(image_id, ids)
            removed = [history.named(self._data, a) for a in annotations]
            self._change({"op": "delete", "image_id": annotations[0]["image_id"], "annotations": removed})
            return copy.deepcopy(removed)

    def edit(self, annotation_id: int, rle: CocoRle, prompt: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Give one object a new mask (and the prompt behind it, if any); returns it."""
        area, bbox = area_and_bbox(rle)
        if area == 0:
            raise bad_request("the edited mask is empty (0 pixels); delete the object instead")
        with self._locked():
            self._refresh()
            annotation = history.find(self._data, annotation_id)
            after = {"segmentation": rle, "area": area, "bbox": bbox, **({"prompt": prompt} if prompt is not None else {})}
            self._change({"op": "edit", "image_id": annotation["image_id"], "id": annotation_id,
                          "before": history.edited_fields(annotation), "after": after})
            return history.named(self._data, annotation)

    def reject_proposal(self, image_id: int, proposal_id: int) -> dict[str, Any]:
        """Take a stored proposal off the image's list (an undoable change); returns it."""
        with self._locked():
            self._refresh()
            index, proposal = self._proposal(image_id, proposal_id)
            self._change({"op": "reject", "image_id": image_id, "proposal": copy.deepcopy(proposal),
                          "proposal_index": index})
            return copy.deepcopy(proposal)

    def undo(self, image_id: int, seq: Optional[int] = None) -> dict[str, Any]:
        """Undo the last change of ``image_id`` (``seq``: the number the client expects it to have)."""
        return self._step(image_id, True, seq)

    def redo(self, image_id: int, seq: Optional[int] = None) -> dict[str, Any]:
        """Redo the last undone change of ``image_id``."""
        return self._step(image_id, False, seq)

    def set_state(self, image_id: int, state: str) -> str:
        """Set an image's state (one of :data:`STATES`); returns it."""
        if state not in STATES:
            raise bad_request(f"state must be one of {list(STATES)}, got {state!r}")
        with self._locked():
            self._refresh()
            self._image(image_id)["state"] = state
            self._write()
            return state

    def set_proposals(self, image_id: int, proposals: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the stored proposals of ``image_id`` (each gets an ``id``); returns them."""
        with self._locked():
            self._refresh()
            self._image(image_id)
            entry = history.proposal_list(self._data, image_id)
            items = []
            for proposal in proposals:
                items.append({"id": entry["next_id"], **copy.deepcopy(proposal)})
                entry["next_id"] += 1
            entry["items"] = items
            self._write()
            return copy.deepcopy(items)

    # ------------------------------------------------------------- helpers
    def _change(self, op: dict[str, Any]) -> dict[str, Any]:
        """Apply and record one operation, move a new image to in_progress, and write the file."""
        stored = history.record(self._data, op)
        image = self._image(op["image_id"])
        if image.get("state", "new") == "new":
            image["state"] = "in_progress"
        self._write()
        return stored

    def _step(self, image_id: int, backward: bool, seq: Optional[int]) -> dict[str, Any]:
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
            raise bad_request(f"seq must be an integer (an action's number from the history), got {seq!r}")
        with self._locked():
            self._refresh()
            self._image(image_id)
            try:
                op = history.step(self._data, image_id, backward, seq)
            except history.DroppedOperation:
                self._write()
                raise
            self._write()
            return {"seq": op["seq"], "op": op["op"], "ids": history.affected(op), "text": history.describe(op)}

    def _named(self, image_id: Optional[int]) -> list[dict[str, Any]]:
        names = history.category_names(self._data)
        return [
            {**copy.deepcopy(a), "category": names.get(a["category_id"], "")}
            for a in self._data["annotations"]
            if image_id is None or a["image_id"] == image_id
        ]

    def _image(self, image_id: int) -> dict[str, Any]:
        for image in self._data["images"]:
            if image["id"] == image_id:
                return image
        raise not_found(f"unknown image id {image_id}")

    def _of_image(self, image_id: Optional[int], ids: Sequence[int]) -> list[dict[str, Any]]:
        """The annotations ``ids``, all of ``image_id`` (None: of the first one's image); 400 for others,
        404 for unknown ids."""
        if image_id is not None:
            self._image(image_id)
        if not isinstance(ids, (list, tuple)) or not ids or not all(_is_int(i) for i in ids):
            raise bad_request(f"ids must be a non-empty list of annotation ids, got {ids!r}")
        if len(set(ids)) != len(ids):
            raise bad_request(f"ids must not repeat, got {list(ids)}")
        annotations = [history.find(self._data, i) for i in ids]
        image_id = annotations[0]["image_id"] if image_id is None else image_id
        others = [a["id"] for a in annotations if a["image_id"] != image_id]
        if others:
            raise bad_request(f"annotation(s) {others} belong to another image than {image_id}")
        return annotations

    def _proposal(self, image_id: int, proposal_id: int) -> tuple[int, dict[str, Any]]:
        self._image(image_id)
        items = history.proposal_list(self._data, image_id)["items"]
        for index, proposal in enumerate(items):
            if proposal.get("id") == proposal_id:
                return index, proposal
        raise not_found(f"no proposal {proposal_id} on image {image_id} (accepted or rejected already?)")

    def _name(self, category: Optional[str]) -> str:
        if category is None:
            return UNLABELLED
        try:
            name = normalised_label(category)
        except ValueError as error:
            raise bad_request(f"category: {error}") from None
        if self.labels is not None and name not in self.labels and name != UNLABELLED:
            raise bad_request(f"category {name!r} is not one of the labels {self.labels} (--labels)")
        return name

    def _add_images(self, images: Sequence[ImageFile]) -> None:
        known = {image["file_name"] for image in self._data["images"]}
        next_id = max((image["id"] for image in self._data["images"]), default=0) + 1
        for image in images:
            if image.file_name not in known:
                self._data["images"].append(
                    {"id": next_id, "file_name": image.file_name, "width": image.width, "height": image.height}
                )
                next_id += 1

    @staticmethod
    def _empty() -> dict[str, Any]:
        return {"info": {**INFO, "next_annotation_id": 1}, "images": [], "annotations": [], "categories": []}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if fcntl is None:
                yield
                return
            with open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _file_stamp(self) -> Optional[tuple[int, int, int]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _refresh(self) -> None:
        """Read the file again if another writer replaced it since this store wrote it."""
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._stamp:
            self._data = self._read()
            self._add_images(self._images)
            history.section(self._data)
            self._stamp = stamp

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"--out {self.path} exists but is not a JSON file ({error}); move it away or pick another --out") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
            raise ValueError(
                f"--out {self.path} exists but is not a COCO dataset (an object with lists 'images', "
                "'annotations' and 'categories'); move it away or pick another --out"
            )
        if not all(isinstance(a, dict) and isinstance(a.get("id"), int) for a in data["annotations"]):
            raise ValueError(f"--out {self.path}: every annotation must be an object with an integer 'id'")
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        next_id = max((a["id"] for a in data["annotations"]), default=0) + 1
        data["info"] = {**INFO, **info, "next_annotation_id": max(int(info.get("next_annotation_id", 1)), next_id)}
        return data

    def _write(self) -> None:
        """Write the dataset atomically (a temporary file in the same folder, fsync, rename, fsync the folder)."""
        write_json_atomically(self.path, self._data)
        self._stamp = self._file_stamp()


def _state(image: dict[str, Any], annotated: bool) -> str:
    """An image's state: the stored one, else in_progress when it has objects, else new."""
    state = image.get("state")
    return state if state in STATES else ("in_progress" if annotated else "new")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
