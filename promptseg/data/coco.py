"""A COCO-format instance segmentation dataset: an images folder and an instances JSON whose
segmentations are polygons or RLE, decoded with pycocotools."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch

from promptseg.data.sample import Sample
from promptseg.errors import optional_module
from promptseg.io import read_image

PathLike = Union[str, "os.PathLike[str]"]


def _coco_class() -> type:
    return optional_module("pycocotools.coco", "the COCO loader", "pip install pycocotools").COCO


class CocoInstances(torch.utils.data.Dataset):
    """Images with at least one non-crowd instance; item i is a :class:`Sample`.

    Args:
        images_dir: folder holding the files named by the JSON's ``images[].file_name``.
        annotations: the instances JSON.
        min_area: instances with a smaller ``area`` are left out.
    """

    def __init__(self, images_dir: PathLike, annotations: PathLike, min_area: float = 0.0) -> None:
        COCO = _coco_class()
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"images folder not found: {self.images_dir}")
        if not Path(annotations).is_file():
            raise FileNotFoundError(f"annotations file not found: {annotations}")
        self.coco = COCO(str(annotations))
        self.min_area = min_area
        self.image_ids = [
            image_id for image_id in sorted(self.coco.getImgIds()) if self._annotations(image_id)
        ]
        if not self.image_ids:
            raise ValueError(f"{annotations} has no image with a non-crowd instance of area >= {min_area}")

    def _annotations(self, image_id: int) -> list[dict]:
        annotation_ids = self.coco.getAnnIds(imgIds=[image_id], iscrowd=False)
        return [a for a in self.coco.loadAnns(annotation_ids) if a.get("area", 1.0) >= self.min_area]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Sample:
        image_id = self.image_ids[index]
        info = self.coco.loadImgs([image_id])[0]
        image = read_image(self.images_dir / info["file_name"])
        if image.shape[:2] != (info["height"], info["width"]):
            turned = " (upright by its EXIF orientation; were the annotations made on it as stored?)" \
                if image.shape[:2] == (info["width"], info["height"]) else ""
            raise ValueError(
                f"{info['file_name']} is {image.shape[1]}x{image.shape[0]}{turned} but the annotations say "
                f"{info['width']}x{info['height']}"
            )
        masks = np.stack([self.coco.annToMask(a).astype(bool) for a in self._annotations(image_id)])
        return Sample(image=image, masks=masks)
