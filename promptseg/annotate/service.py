"""What the annotation server does, apart from HTTP: images, clicks, proposals and the annotations file."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from promptseg.annotate.cache import EmbeddingCache
from promptseg.annotate.coco_masks import checked_rle, encode_masks, iou_matrix, polygon_rle
from promptseg.annotate.errors import bad_request, not_found
from promptseg.annotate.images import ImageFile, list_images
from promptseg.annotate.logits import LogitsTokens
from promptseg.annotate.prompts import parse_click, parse_prefill
from promptseg.annotate.store import AnnotationStore
from promptseg.modeling import Sam

# A proposal that overlaps an accepted object this much is not offered again.
PROPOSAL_DUPLICATE_IOU = 0.7


class AnnotationService:
    """The images of ``image_dir``, the model behind the clicks, and the annotations written to ``out``.

    Decoding (clicks and pre-fill) runs one request at a time; embeddings are computed by the
    :class:`EmbeddingCache`, which works ahead on the next image.
    """

    def __init__(
        self,
        image_dir: Path,
        out: Path,
        model: Sam,
        cache_size: int = 8,
        prefetch: bool = True,
        prefill_defaults: Optional[dict[str, Any]] = None,
    ) -> None:
        """
        Args:
            image_dir: the folder of images (only files directly inside it are served).
            out: the COCO annotations file (created, or resumed when it exists).
            model: the SAM behind clicks and pre-fill.
            cache_size: embeddings kept in the LRU cache.
            prefetch: embed the opened image and the next one on a background thread.
            prefill_defaults: generator settings for pre-fill requests that do not give them
                (points_per_side, pred_iou_thresh, stability_score_thresh).
        """
        self.prefill_defaults = parse_prefill(prefill_defaults or {})
        files = list_images(image_dir)
        self.store = AnnotationStore(out, files)
        self.images: dict[int, ImageFile] = {self.store.image_id(f.file_name): f for f in files}
        self.order = sorted(self.images, key=lambda image_id: self.images[image_id].file_name)
        self.model = model
        self.prefetch_enabled = prefetch
        self.cache = EmbeddingCache(model, lambda image_id: self.images[image_id].pixels(), capacity=cache_size)
        self.tokens = LogitsTokens()
        self._decode_lock = threading.Lock()

    # --------------------------------------------------------------- images
    def image(self, image_id: str | int) -> tuple[int, ImageFile]:
        """The image of an id from a URL; 400 for ids that are not decimal integers, 404 for unknown ones."""
        if isinstance(image_id, str):
            if not image_id.isdigit() or not image_id.isascii() or len(image_id) > 18:
                raise bad_request(f"image id must be a decimal integer, got {image_id[:60]!r}")
            image_id = int(image_id)
        if image_id not in self.images:
            raise not_found(f"unknown image id {image_id}")
        return image_id, self.images[image_id]

    def list_images(self) -> list[dict[str, Any]]:
        counts = self.store.counts()
        return [
            {
                "id": image_id,
                "file_name": self.images[image_id].file_name,
                "width": self.images[image_id].width,
                "height": self.images[image_id].height,
                "annotations": counts.get(image_id, 0),
                "embedded": self.cache.cached(image_id),
            }
            for image_id in self.order
        ]

    def opened(self, image_id: int) -> None:
        """The annotator opened ``image_id``: embed it and the next image in the background."""
        if not self.prefetch_enabled:
            return
        self.cache.prefetch(image_id)
        following = self.next_image(image_id)
        if following is not None:
            self.cache.prefetch(following)

    def next_image(self, image_id: int) -> Optional[int]:
        position = self.order.index(image_id)
        return self.order[position + 1] if position + 1 < len(self.order) else None

    # ---------------------------------------------------------------- clicks
    def predict(self, image_id: str | int, body: Any) -> dict[str, Any]:
        """Masks for the clicks/box of a predict request (see docs/annotate.md)."""
        started = time.perf_counter()
        image_id, image = self.image(image_id)
        prompt = parse_click(body, image.width, image.height)
        mask_input = self.tokens.get(image_id, prompt.mask_input) if prompt.mask_input is not None else None
        embedded_now = not self.cache.cached(image_id)
        embedded = self.cache.get(image_id)
        with self._decode_lock:
            start = time.perf_counter()
            masks, scores, logits = embedded.predictor.predict(
                point_coords=prompt.points,
                point_labels=prompt.labels,
                box=prompt.box,
                mask_input=mask_input,
                multimask_output=prompt.multimask,
            )
            decode_ms = 1e3 * (time.perf_counter() - start)
        if self.prefetch_enabled:
            following = self.next_image(image_id)
            if following is not None:
                self.cache.prefetch(following)
        tokens = [self.tokens.put(image_id, candidate) for candidate in logits]
        return {
            "masks": encode_masks(masks),
            "scores": [float(s) for s in scores],
            "mask_input": tokens[int(np.argmax(scores))],
            "mask_inputs": tokens,
            "decode_ms": decode_ms,
            "encode_ms": embedded.encode_ms if embedded_now else None,
            "server_ms": 1e3 * (time.perf_counter() - started),
        }

    # ----------------------------------------------------------- pre-filling
    def prefill(self, image_id: str | int, body: Any) -> dict[str, Any]:
        """Automatic mask proposals for one image, minus those that repeat an accepted object."""
        from promptseg.automatic import SamAutomaticMaskGenerator

        image_id, image = self.image(image_id)
        settings = parse_prefill(body, self.prefill_defaults)
        generator = SamAutomaticMaskGenerator(
            self.model, output_mode="coco_rle", decoder=self.cache.decoder, **settings
        )
        pixels = image.pixels()
        with self._decode_lock:
            start = time.perf_counter()
            records = generator.generate(pixels)
            elapsed_ms = 1e3 * (time.perf_counter() - start)
        accepted = [a["segmentation"] for a in self.store.annotations(image_id)]
        proposals = [
            {
                "rle": record["segmentation"],
                "score": float(record["predicted_iou"]),
                "stability_score": float(record["stability_score"]),
                "area": int(record["area"]),
                "bbox": [float(v) for v in record["bbox"]],
            }
            for record in records
        ]
        overlap = iou_matrix([p["rle"] for p in proposals], accepted)
        kept = [p for p, row in zip(proposals, overlap) if not (row >= PROPOSAL_DUPLICATE_IOU).any()]
        return {"image_id": image_id, "proposals": kept, "settings": settings, "elapsed_ms": elapsed_ms}

    # ----------------------------------------------------------- annotations
    def annotate(self, image_id: str | int, body: Any) -> dict[str, Any]:
        """Store ``{"rle" | "polygon", "category"}`` for an image; returns the stored annotation."""
        image_id, image = self.image(image_id)
        if not isinstance(body, dict):
            raise bad_request(f"the request body must be a JSON object, got {type(body).__name__}")
        unknown = sorted(set(body) - {"rle", "polygon", "category", "score"})
        if unknown:
            raise bad_request(f"unknown field(s) {unknown}; expected 'rle' or 'polygon', and 'category'")
        if ("rle" in body) == ("polygon" in body):
            raise bad_request("give exactly one of 'rle' (COCO RLE) and 'polygon' (list of [x0, y0, x1, y1, ...])")
        if "rle" in body:
            rle = checked_rle(body["rle"], image.height, image.width)
        else:
            rle = polygon_rle(body["polygon"], image.height, image.width)
        if "category" not in body:
            raise bad_request("missing 'category' (the object's label)")
        return self.store.add(image_id, rle, body["category"])

    def annotation_id(self, text: str) -> int:
        if not text.isdigit() or not text.isascii() or len(text) > 18:
            raise bad_request(f"annotation id must be a decimal integer, got {text[:60]!r}")
        return int(text)

    def close(self) -> None:
        self.cache.close()
