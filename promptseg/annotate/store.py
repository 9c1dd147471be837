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

from promptseg.annotate.coco_masks import area_and_bbox
from promptseg.annotate.errors import bad_request, not_found
from promptseg.annotate.images import ImageFile
from promptseg.io import CocoRle, write_json_atomically

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

INFO = {"description": "promptseg annotate", "version": "1.0"}
MAX_CATEGORY_LENGTH = 100


class AnnotationStore:
    """COCO images, categories and annotations, kept in memory and on disk.

    Image ids stay those of the file (matched by file name) when a session resumes; new files get new ids.
    Annotation ids are never reused (the next one is kept in the file's ``info``).
    """

    def __init__(self, path: Path, images: Sequence[ImageFile]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._stamp: Optional[tuple[int, int, int]] = None
        self._images = list(images)
        self._data = self._empty()
        with self._locked():
            if self.path.exists():
                self._data = self._read()
            self._add_images(images)
            self._write()

    # ------------------------------------------------------------- reading
    def image_id(self, file_name: str) -> int:
        with self._lock:
            return next(image["id"] for image in self._data["images"] if image["file_name"] == file_name)

    def annotations(self, image_id: Optional[int] = None) -> list[dict[str, Any]]:
        """Copies of the stored annotations (of one image), each with its ``category`` name added."""
        with self._locked():
            self._refresh()
            names = {c["id"]: c["name"] for c in self._data["categories"]}
            return [
                {**copy.deepcopy(a), "category": names.get(a["category_id"], "")}
                for a in self._data["annotations"]
                if image_id is None or a["image_id"] == image_id
            ]

    def counts(self) -> dict[int, int]:
        """Annotations per image id."""
        with self._locked():
            self._refresh()
            counts: dict[int, int] = {}
            for annotation in self._data["annotations"]:
                counts[annotation["image_id"]] = counts.get(annotation["image_id"], 0) + 1
            return counts

    def categories(self) -> list[dict[str, Any]]:
        with self._locked():
            self._refresh()
            return copy.deepcopy(self._data["categories"])

    def export(self) -> dict[str, Any]:
        """The COCO dataset (a copy)."""
        with self._locked():
            self._refresh()
            return copy.deepcopy(self._data)

    # ------------------------------------------------------------- changes
    def add(self, image_id: int, rle: CocoRle, category: str, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Store a mask of ``image_id`` labelled ``category``; returns the stored annotation."""
        name = _checked_category(category)
        area, bbox = area_and_bbox(rle)
        if area == 0:
            raise bad_request("the mask is empty (0 pixels); nothing to store")
        with self._locked():
            self._refresh()
            if not any(image["id"] == image_id for image in self._data["images"]):
                raise not_found(f"unknown image id {image_id}")
            annotation = {
                "id": self._data["info"]["next_annotation_id"],
                "image_id": image_id,
                "category_id": self._category_id(name),
                "segmentation": rle,
                "area": area,
                "bbox": bbox,
                "iscrowd": 0,
                **(extra or {}),
            }
            self._data["info"]["next_annotation_id"] += 1
            self._data["annotations"].append(annotation)
            self._write()
            return {**copy.deepcopy(annotation), "category": name}

    def relabel(self, annotation_id: int, category: str) -> dict[str, Any]:
        name = _checked_category(category)
        with self._locked():
            self._refresh()
            annotation = self._find(annotation_id)
            annotation["category_id"] = self._category_id(name)
            self._write()
            return {**copy.deepcopy(annotation), "category": name}

    def delete(self, annotation_id: int) -> dict[str, Any]:
        with self._locked():
            self._refresh()
            annotation = self._find(annotation_id)
            self._data["annotations"].remove(annotation)
            self._write()
            return copy.deepcopy(annotation)

    # ------------------------------------------------------------- helpers
    def _find(self, annotation_id: int) -> dict[str, Any]:
        for annotation in self._data["annotations"]:
            if annotation["id"] == annotation_id:
                return annotation
        raise not_found(f"unknown annotation id {annotation_id}")

    def _category_id(self, name: str) -> int:
        for category in self._data["categories"]:
            if category["name"] == name:
                return category["id"]
        new_id = max((c["id"] for c in self._data["categories"]), default=0) + 1
        self._data["categories"].append({"id": new_id, "name": name, "supercategory": name})
        return new_id

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


def _checked_category(category: Any) -> str:
    if not isinstance(category, str) or not category.strip():
        raise bad_request(f"category must be a non-empty string, got {category!r}")
    name = category.strip()
    if len(name) > MAX_CATEGORY_LENGTH:
        raise bad_request(f"category must be at most {MAX_CATEGORY_LENGTH} characters, got {len(name)}")
    return name

