"""What the annotation server does, apart from HTTP: images, clicks, proposals and the annotations file."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from promptseg.annotate.bodies import MaskBody, parse_accept, parse_edit, parse_ids, parse_state, parse_step
from promptseg.annotate.cache import EmbeddingCache
from promptseg.annotate.coco_masks import CocoRle, checked_rle, decode_mask, encode_masks, iou_matrix, polygon_rle
from promptseg.annotate.errors import ApiError, bad_request, not_found
from promptseg.annotate.images import ImageFile, OutsideFolderError, problem, scan_images
from promptseg.annotate.logits import KeptLogits, LogitsTokens
from promptseg.annotate.prompts import parse_click, parse_prefill
from promptseg.annotate.store import AnnotationStore
from promptseg.errors import ImageReadError
from promptseg.modeling import Sam

# A proposal that overlaps an accepted object this much is not offered again.
PROPOSAL_DUPLICATE_IOU = 0.7


class AnnotationService:
    """The images of ``image_dir``, the model behind the clicks, and the annotations written to ``out``.

    Decoding (clicks and pre-fill) runs one request at a time; embeddings are computed by the
    :class:`EmbeddingCache`, which works ahead on the next image.

    Files whose header cannot be read are left out of the images and listed in ``unavailable``; a
    file found unreadable later (truncated, replaced, gone, a link out of the folder) answers 4xx
    (:meth:`reading`) and is marked unavailable in the listing until it reads again.
    """

    def __init__(
        self,
        image_dir: Path,
        out: Path,
        model: Sam,
        cache_size: int = 8,
        prefetch: bool = True,
        prefill_defaults: Optional[dict[str, Any]] = None,
        labels: Optional[list[str]] = None,
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
            labels: a fixed list of class names (``--labels``); None: free-text labels.
        """
        self.prefill_defaults = parse_prefill(prefill_defaults or {})
        files, self.unavailable = scan_images(image_dir)
        self.problems: dict[int, str] = {}
        self.store = AnnotationStore(out, files, labels=labels)
        self.images: dict[int, ImageFile] = {self.store.image_id(f.file_name): f for f in files}
        self.order = sorted(self.images, key=lambda image_id: self.images[image_id].file_name)
        self.model = model
        self.prefetch_enabled = prefetch
        self.cache = EmbeddingCache(model, self.pixels, capacity=cache_size)
        self.tokens = LogitsTokens()
        self.kept_logits = KeptLogits()
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

    @contextmanager
    def reading(self, image_id: int) -> Iterator[None]:
        """Around a read of an image file: a file that cannot be read becomes a 4xx naming the problem
        (422 not a readable image, 404 gone, 403 outside the folder) and is marked unavailable."""
        file_name = self.images[image_id].file_name
        try:
            yield
        except (ImageReadError, OSError) as error:
            reason = problem(error)
            self.problems[image_id] = reason
            status = 403 if isinstance(error, OutsideFolderError) else 404 if isinstance(error, FileNotFoundError) else 422
            raise ApiError(status, f"image {image_id} ({file_name}) cannot be read: {reason}") from None
        self.problems.pop(image_id, None)

    def pixels(self, image_id: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of an image (4xx when unreadable: :meth:`reading`)."""
        with self.reading(image_id):
            return self.images[image_id].pixels()

    def browser_bytes(self, image_id: str | int) -> tuple[bytes, str]:
        """(content, media type) of an image for the page (4xx when unreadable: :meth:`reading`)."""
        image_id, image = self.image(image_id)
        with self.reading(image_id):
            return image.browser_bytes()

    def list_images(self) -> list[dict[str, Any]]:
        """The images with their ids, sizes, object counts, states, whether embedded, and ``unavailable``
        (null, or why the file cannot be read now)."""
        counts, states = self.store.counts(), self.store.states()
        return [
            {
                "id": image_id,
                "file_name": self.images[image_id].file_name,
                "width": self.images[image_id].width,
                "height": self.images[image_id].height,
                "annotations": counts.get(image_id, 0),
                "state": states.get(image_id, "new"),
                "embedded": self.cache.cached(image_id),
                "unavailable": self.problems.get(image_id),
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

        image_id, _ = self.image(image_id)
        settings = parse_prefill(body, self.prefill_defaults)
        generator = SamAutomaticMaskGenerator(
            self.model, output_mode="coco_rle", decoder=self.cache.decoder, **settings
        )
        pixels = self.pixels(image_id)
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
                "point": [float(v) for v in record["point_coords"][0]],
            }
            for record in records
        ]
        overlap = iou_matrix([p["rle"] for p in proposals], accepted)
        kept = [p for p, row in zip(proposals, overlap) if not (row >= PROPOSAL_DUPLICATE_IOU).any()]
        stored = self.store.set_proposals(image_id, kept)
        return {"image_id": image_id, "proposals": stored, "settings": settings, "elapsed_ms": elapsed_ms}

    # ----------------------------------------------------------- annotations
    def annotate(self, image_id: str | int, body: Any) -> dict[str, Any]:
        """Store ``{"rle" | "polygon" | "proposal", "category", "prompt"?, "mask_input"?}`` for an image;
        returns the stored annotation. ``mask_input`` (the accepted candidate's token) keeps its logits
        for later refinement; ``proposal`` accepts a stored proposal (and takes it off the list)."""
        image_id, image = self.image(image_id)
        mask, category = parse_accept(body, image.width, image.height)
        prompt = mask.prompt
        if mask.proposal is not None:
            proposal = self.store.proposal(image_id, mask.proposal)
            rle = proposal["rle"]
            if prompt is None and "point" in proposal:
                prompt = {"points": [proposal["point"]], "labels": [1], "box": None}
        else:
            rle = self._mask_rle(mask, image)
        logits = self.tokens.get(image_id, mask.mask_input) if mask.mask_input is not None else None
        stored = self.store.add(image_id, rle, category, prompt=prompt, proposal_id=mask.proposal)
        if logits is not None:
            self.kept_logits.keep(stored["id"], image_id, logits)
        return stored

    def edit(self, annotation_id: str, body: Any) -> dict[str, Any]:
        """Give an object a new mask ``{"rle" | "polygon", "fill_rule"?, "prompt"?, "mask_input"?}``."""
        number = self.annotation_id(annotation_id)
        image_id, image = self.image(self.store.annotation(number)["image_id"])
        mask = parse_edit(body, image.width, image.height)
        rle = self._mask_rle(mask, image)
        logits = self.tokens.get(image_id, mask.mask_input) if mask.mask_input is not None else None
        stored = self.store.edit(number, rle, prompt=mask.prompt)
        if logits is not None:
            self.kept_logits.keep(number, image_id, logits)
        return stored

    def relabel(self, image_id: str | int, body: Any) -> list[dict[str, Any]]:
        """``{"ids": [...], "category": name | null}``: one label for several objects, as one change."""
        image_id, _ = self.image(image_id)
        ids, category = parse_ids(body, with_category=True)
        return self.store.relabel_many(image_id, ids, category)

    def delete(self, image_id: str | int, body: Any) -> list[dict[str, Any]]:
        """``{"ids": [...]}``: delete several objects, as one change."""
        image_id, _ = self.image(image_id)
        ids, _ = parse_ids(body, with_category=False)
        return self.store.delete_many(image_id, ids)

    def step(self, image_id: str | int, body: Any, backward: bool) -> dict[str, Any]:
        """Undo (``backward``) or redo an image's last change; ``{"seq": n}`` optional."""
        image_id, _ = self.image(image_id)
        seq = parse_step(body)
        done = self.store.undo(image_id, seq) if backward else self.store.redo(image_id, seq)
        return {"done": done, "image": self.store.snapshot(image_id)}

    def set_state(self, image_id: str | int, body: Any) -> dict[str, Any]:
        image_id, _ = self.image(image_id)
        return {"image_id": image_id, "state": self.store.set_state(image_id, parse_state(body))}

    def reject_proposal(self, image_id: str | int, proposal_id: str) -> dict[str, Any]:
        image_id, _ = self.image(image_id)
        return self.store.reject_proposal(image_id, self.annotation_id(proposal_id, "proposal"))

    def snapshot(self, image_id: str | int) -> dict[str, Any]:
        """The image's objects, proposals, state and history (what the page shows)."""
        image_id, _ = self.image(image_id)
        return self.store.snapshot(image_id)

    def object_prompt(self, annotation_id: str) -> dict[str, Any]:
        """What refining an object starts from: its stored clicks, and a fresh ``mask_input`` token for
        its logits when they are still kept (else null: the clicks alone)."""
        number = self.annotation_id(annotation_id)
        annotation = self.store.annotation(number)
        prompt = annotation.get("prompt") or {"points": [], "labels": [], "box": None}
        kept = self.kept_logits.get(number)
        token = self.tokens.put(kept[0], kept[1][0]) if kept is not None else None
        return {**prompt, "annotation_id": number, "mask_input": token}

    def object_polygon(self, annotation_id: str, tolerance: Any) -> dict[str, Any]:
        """The object's polygon rings (holes marked) for vertex editing; ``tolerance`` in pixels."""
        from promptseg.annotate.formats import mask_rings

        number = self.annotation_id(annotation_id)
        tolerance = _tolerance(tolerance)
        annotation = self.store.annotation(number)
        return {"annotation_id": number, "tolerance": tolerance,
                "rings": mask_rings(decode_mask(annotation["segmentation"]), tolerance)}

    def export(self, fmt: str, tolerance: Any) -> tuple[bytes, str, str]:
        """(content, media type, file name) of the annotations in format ``fmt`` (see formats)."""
        from promptseg.annotate.formats import FORMATS, export_bytes

        if fmt not in FORMATS:
            raise not_found(f"unknown export format {fmt[:40]!r}; expected one of {list(FORMATS)}")
        return export_bytes(self.store.export(), fmt, _tolerance(tolerance))

    def _mask_rle(self, mask: MaskBody, image: ImageFile) -> CocoRle:
        if mask.rle is not None:
            return checked_rle(mask.rle, image.height, image.width)
        return polygon_rle(mask.polygon, image.height, image.width, mask.fill_rule)

    def annotation_id(self, text: str, what: str = "annotation") -> int:
        if not text.isdigit() or not text.isascii() or len(text) > 18:
            raise bad_request(f"{what} id must be a decimal integer, got {text[:60]!r}")
        return int(text)

    def close(self) -> None:
        self.cache.close()


def _tolerance(value: Any) -> float:
    """A polygon tolerance from a query string (pixels, 0..20; default that of the formats)."""
    from promptseg.annotate.formats import DEFAULT_TOLERANCE

    if value is None:
        return DEFAULT_TOLERANCE
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad_request(f"tolerance must be a number of pixels, got {str(value)[:40]!r}") from None
    if not 0 <= number <= 20:
        raise bad_request(f"tolerance must be in 0..20 pixels, got {number}")
    return number
