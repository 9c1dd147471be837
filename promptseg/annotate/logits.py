"""Server-side memory of the low-res logits behind each ``mask_input`` token of the predict API."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Optional

import numpy as np

from promptseg.annotate.errors import bad_request


class LogitsTokens:
    """Up to ``capacity`` (1, 256, 256) float32 logits, each under an opaque token and tied to one image.

    The oldest are forgotten first; a forgotten token is answered with a 400 asking for a fresh click.
    """

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[int, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, image_id: int, logits: np.ndarray) -> str:
        """A new token for (256, 256) ``logits`` of ``image_id`` (a copy is kept)."""
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._items[token] = (image_id, np.array(logits, dtype=np.float32, copy=True)[None])
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return token

    def get(self, image_id: int, token: object) -> np.ndarray:
        """The (1, 256, 256) logits of ``token``, which must belong to ``image_id``."""
        if not isinstance(token, str):
            raise bad_request(f"mask_input must be a token string from an earlier predict response or null, got {type(token).__name__}")
        with self._lock:
            item = self._items.get(token)
            if item is not None:
                self._items.move_to_end(token)
        if item is None:
            raise bad_request(f"unknown or expired mask_input token {token[:40]!r}; predict again without it")
        owner, logits = item
        if owner != image_id:
            raise bad_request(f"mask_input token belongs to image {owner}, not to image {image_id}")
        return logits


class KeptLogits:
    """The low-res logits behind accepted objects, so a later click can refine an object from them:
    up to ``capacity`` (1, 256, 256) float32 arrays by annotation id, the oldest forgotten first
    (they live in memory only; after a restart an object is refined from its stored clicks alone)."""

    def __init__(self, capacity: int = 128) -> None:
        self.capacity = capacity
        self._items: OrderedDict[int, tuple[int, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, annotation_id: int, image_id: int, logits: np.ndarray) -> None:
        with self._lock:
            self._items[annotation_id] = (image_id, logits)
            self._items.move_to_end(annotation_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, annotation_id: int) -> Optional[tuple[int, np.ndarray]]:
        """(image id, (1, 256, 256) logits) of an object, or None when they are not kept."""
        with self._lock:
            return self._items.get(annotation_id)
