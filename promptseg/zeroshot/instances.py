"""Zero-shot instance segmentation: an existing detector's boxes as SAM's prompts (the paper's section 7.4).

Input: COCO-format detections (``image_id``, ``bbox`` XYWH, ``score``, ``category_id``). Each image's
boxes are decoded together (one :meth:`promptseg.SamPredictor.predict_batch` call per group of images);
output: COCO segmentation results (compressed RLE) keeping each detection's score and category.

Which mask a box gets: the paper takes SAM's single-mask output for a box (``mask_choice="single"``,
the default); ``"best"`` takes the multimask output with the highest predicted IoU instead.
``score="detection"`` (default) keeps the detector's score; ``"detection_x_iou"`` multiplies it by
SAM's predicted IoU.
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.amg.rle import encode_rle
from promptseg.decoders import Decoder
from promptseg.modeling import Sam
from promptseg.predictor import SamPredictor

MASK_CHOICES = ("single", "best")
SCORE_MODES = ("detection", "detection_x_iou")
Detection = Mapping[str, Any]
ImageLoader = Callable[[int], np.ndarray]


def check_detections(detections: Any) -> list[dict[str, Any]]:
    """Validated copies of COCO detections: a list of dicts with int ``image_id``, ``bbox`` [x, y, w, h]
    (w, h >= 0), real ``score`` and int ``category_id``."""
    if not isinstance(detections, (list, tuple)):
        raise TypeError(f"detections must be a list of COCO detection dicts, got {type(detections).__name__}")
    checked = []
    for index, detection in enumerate(detections):
        if not isinstance(detection, Mapping):
            raise TypeError(f"detection {index} must be a dict, got {type(detection).__name__}")
        missing = {"image_id", "bbox", "score", "category_id"} - set(detection)
        if missing:
            raise ValueError(f"detection {index} lacks {sorted(missing)}; expected image_id, bbox (XYWH), score, category_id")
        bbox = detection["bbox"]
        if (
            not isinstance(bbox, (list, tuple))
            or len(bbox) != 4
            or not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in bbox)
            or bbox[2] < 0
            or bbox[3] < 0
        ):
            raise ValueError(f"detection {index}: bbox must be [x, y, width, height] with width, height >= 0, got {bbox!r}")
        for key in ("image_id", "category_id"):
            if not isinstance(detection[key], numbers.Integral) or isinstance(detection[key], bool):
                raise TypeError(f"detection {index}: {key} must be an int, got {detection[key]!r}")
        if not isinstance(detection["score"], numbers.Real) or isinstance(detection["score"], bool):
            raise TypeError(f"detection {index}: score must be a number, got {detection['score']!r}")
        checked.append({**detection, "bbox": [float(v) for v in bbox]})
    return checked


class BoxInstanceSegmenter:
    """Masks for detector boxes, written as COCO segmentation results."""

    def __init__(
        self,
        model: Sam,
        mask_choice: str = "single",
        score: str = "detection",
        prompt_batch_size: int = 64,
        decoder: Optional[Decoder] = None,
    ) -> None:
        """
        Args:
            model: the SAM to prompt.
            mask_choice: "single" (the paper: single-mask output) or "best" (the best-scored of 3).
            score: "detection" (keep the detector's score) or "detection_x_iou".
            prompt_batch_size: boxes decoded together.
            decoder: what decodes the boxes; default as ``SamPredictor``.
        """
        if mask_choice not in MASK_CHOICES:
            raise ValueError(f"mask_choice must be one of {list(MASK_CHOICES)}, got {mask_choice!r}")
        if score not in SCORE_MODES:
            raise ValueError(f"score must be one of {list(SCORE_MODES)}, got {score!r}")
        self.predictor = SamPredictor(model, prompt_batch_size=prompt_batch_size, decoder=decoder)
        self.mask_choice = mask_choice
        self.score = score

    def segment_image(self, image: np.ndarray, detections: Sequence[Detection]) -> list[dict[str, Any]]:
        """COCO results for the detections of one (H, W, 3) uint8 RGB image, in their order."""
        return self.segment_images([image], [detections])[0]

    @torch.no_grad()
    def segment_images(
        self, images: Sequence[np.ndarray], detections_per_image: Sequence[Sequence[Detection]]
    ) -> list[list[dict[str, Any]]]:
        """COCO results per image for each image's detections, the images encoded together.

        Returns:
            Per image, one result per detection (same order): the detection's ``image_id``,
            ``category_id`` and ``bbox``, ``score`` (per ``score``), ``segmentation`` (COCO RLE of
            the mask at the image's size) and ``predicted_iou``.
        """
        if len(images) != len(detections_per_image):
            raise ValueError(f"need one list of detections per image, got {len(images)} images and {len(detections_per_image)} lists")
        checked = [check_detections(list(detections)) for detections in detections_per_image]
        self.predictor.set_images(list(images), batch_size=len(images))
        prompts = [[{"box": _xyxy(d["bbox"])} for d in detections] for detections in checked]
        predictions = self.predictor.predict_batch(prompts, multimask_output=self.mask_choice == "best")
        self.predictor.reset_image()
        results = []
        for detections, (masks, scores, _) in zip(checked, predictions):
            if self.mask_choice == "best" and len(masks):
                pick = scores.argmax(1)
                masks, scores = masks[np.arange(len(masks)), pick], scores[np.arange(len(scores)), pick]
            else:
                masks, scores = masks[:, 0], scores[:, 0]
            rles = encode_rle(torch.from_numpy(np.ascontiguousarray(masks))).to_coco() if len(masks) else []
            image_results = []
            for detection, rle, iou in zip(detections, rles, scores.tolist()):
                score = detection["score"] * (iou if self.score == "detection_x_iou" else 1.0)
                image_results.append(
                    {
                        "image_id": detection["image_id"],
                        "category_id": detection["category_id"],
                        "bbox": detection["bbox"],
                        "score": float(score),
                        "segmentation": rle,
                        "predicted_iou": float(iou),
                    }
                )
            results.append(image_results)
        return results

    def segment_detections(
        self,
        detections: Iterable[Detection],
        load_image: ImageLoader,
        batch_size: int = 4,
        progress: bool = False,
    ) -> list[dict[str, Any]]:
        """COCO results for a whole detections file.

        Args:
            detections: COCO detections of any images.
            load_image: image_id -> (H, W, 3) uint8 RGB image.
            batch_size: images encoded together.
        Returns:
            One result per detection, grouped by image (images in order of first appearance).
        """
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for detection in check_detections(list(detections)):
            by_image[detection["image_id"]].append(detection)
        image_ids = list(by_image)
        results: list[dict[str, Any]] = []
        with tqdm(total=len(image_ids), desc="instances", unit="image", disable=not progress) as bar:
            for start in range(0, len(image_ids), batch_size):
                chunk = image_ids[start : start + batch_size]
                for image_results in self.segment_images([load_image(i) for i in chunk], [by_image[i] for i in chunk]):
                    results.extend(image_results)
                bar.update(len(chunk))
        return results


def _xyxy(bbox: Sequence[float]) -> np.ndarray:
    x, y, width, height = bbox
    return np.array([x, y, x + width, y + height], dtype=np.float64)
