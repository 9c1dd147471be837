"""COCO files of found instances: a dataset (images, annotations, categories) and the matching results list.

``promptseg amg`` (both engines) and ``promptseg find`` write their instances through
:class:`CocoCollection`, so their files have one layout, loadable by pycocotools' ``COCO`` and
``COCO.loadRes``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

from promptseg.io.atomic import write_json_atomically
from promptseg.io.rle import CocoRle

PathLike = Union[str, "os.PathLike[str]"]
OBJECT_CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}
"""The one category of class-agnostic masks."""


class CocoCollection:
    """Images and their instances, gathered one by one, written as a COCO dataset and COCO results.

    Args:
        categories: the dataset's categories (default: the one :data:`OBJECT_CATEGORY`).
    """

    def __init__(self, categories: Sequence[dict[str, Any]] = (OBJECT_CATEGORY,)) -> None:
        self.categories = [dict(category) for category in categories]
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    def add_image(self, file_name: str, height: int, width: int) -> int:
        """Add an image; returns its id (1, 2, ... in the order added)."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        return image_id

    def add_instance(
        self,
        image_id: int,
        segmentation: CocoRle,
        area: int,
        bbox: Sequence[float],
        score: float,
        category_id: int = OBJECT_CATEGORY["id"],
        **result_fields: Any,
    ) -> None:
        """Add one instance of ``image_id``: an annotation (``iscrowd`` 0) and a result scored ``score``.

        Args:
            segmentation: its COCO RLE. area: its pixel count. bbox: its XYWH box.
            result_fields: more fields of the result (e.g. ``stability_score``).
        """
        common = {"image_id": image_id, "category_id": category_id, "segmentation": segmentation, "area": area,
                  "bbox": bbox}
        self.annotations.append({"id": len(self.annotations) + 1, **common, "iscrowd": 0})
        self.results.append({**common, "score": score, **result_fields})

    def dataset(self) -> dict[str, Any]:
        """The COCO dataset: ``{"images", "annotations", "categories"}``."""
        return {"images": self.images, "annotations": self.annotations, "categories": self.categories}

    def write(self, dataset_path: PathLike, results_path: PathLike) -> tuple[Path, Path]:
        """Write the dataset and the results (each atomically); returns the two paths."""
        write_json_atomically(dataset_path, self.dataset())
        write_json_atomically(results_path, self.results)
        return Path(dataset_path), Path(results_path)
