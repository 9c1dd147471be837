"""Image embeddings for the annotation server: computed once per image, kept in an LRU cache, and
computed ahead (on a background thread) for the image the annotator will open next.

Each cached image is a :class:`promptseg.predictor.SamPredictor` with that image set; all of them
share one model and one decoder, so an entry costs one embedding.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Hashable, Optional

import numpy as np

from promptseg.decoders import AutoDecoder, Decoder
from promptseg.modeling import Sam
from promptseg.predictor import SamPredictor


@dataclass(frozen=True)
class Embedded:
    """A predictor with one image set, and how long its embedding took (ms)."""

    predictor: SamPredictor
    encode_ms: float


class EmbeddingCache:
    """LRU cache of embedded images, keyed by image id.

    ``get`` embeds on the calling thread when the image is neither cached nor being embedded
    (so a click never waits behind queued prefetches); ``prefetch`` queues an image for the
    background thread. Entries still being computed are never evicted, nor is the image last
    asked for by ``get``; with a capacity of 1 nothing is prefetched.
    """

    def __init__(
        self,
        model: Sam,
        load_image: Callable[[Hashable], np.ndarray],
        capacity: int = 8,
        decoder: Optional[Decoder] = None,
    ) -> None:
        """
        Args:
            model: the SAM whose encoder embeds the images.
            load_image: image id -> (H, W, 3) uint8 RGB image.
            capacity: embeddings kept (at least 1).
            decoder: shared by every cached predictor; default an AutoDecoder of ``model``.
        """
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"the embedding cache size must be an integer >= 1, got {capacity!r}")
        self.model = model
        self.decoder = decoder if decoder is not None else AutoDecoder(model)
        self.capacity = capacity
        self._load_image = load_image
        self._entries: OrderedDict[Hashable, Future] = OrderedDict()
        self._in_use: Optional[Hashable] = None
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptseg-prefetch")
        self.stats = {"hits": 0, "misses": 0, "prefetched": 0}

    def get(self, key: Hashable) -> Embedded:
        """The embedded image ``key`` (computed now if needed; waits for a prefetch under way)."""
        with self._lock:
            self._in_use = key
            future = self._entries.get(key)
            owner = future is None
            if owner:
                future = self._insert(key)
                self.stats["misses"] += 1
            else:
                self._entries.move_to_end(key)
                self.stats["hits"] += 1
                self._trim()
        if owner:
            self._compute(key, future)
        return future.result()

    def prefetch(self, key: Hashable) -> None:
        """Start embedding ``key`` on the background thread unless it is cached or under way
        (then it only counts as recently used)."""
        if self.capacity < 2:
            return
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self._trim()
                return
            future = self._insert(key)
            self.stats["prefetched"] += 1
        self._worker.submit(self._compute, key, future)

    def cached(self, key: Hashable) -> bool:
        """Whether ``key`` is embedded (not merely under way)."""
        with self._lock:
            future = self._entries.get(key)
            return future is not None and future.done() and future.exception() is None

    def keys(self) -> list[Hashable]:
        """Cached or pending keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until every queued prefetch has finished (for tests and benchmarks)."""
        self._worker.submit(lambda: None).result(timeout=timeout)

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    def _insert(self, key: Hashable) -> Future:
        """A pending entry for ``key``; evicts least recently used finished entries beyond capacity
        (never the one in use)."""
        future: Future = Future()
        self._entries[key] = future
        self._trim()
        return future

    def _trim(self) -> None:
        """Evict least recently used finished entries (not the newest, not the one in use) beyond capacity."""
        newest = next(reversed(self._entries), None)
        for old in list(self._entries):
            if len(self._entries) <= self.capacity:
                break
            if old not in (newest, self._in_use) and self._entries[old].done():
                del self._entries[old]

    def _compute(self, key: Hashable, future: Future) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            start = time.perf_counter()
            predictor = SamPredictor(self.model, decoder=self.decoder)
            predictor.set_image(self._load_image(key))
            future.set_result(Embedded(predictor, 1e3 * (time.perf_counter() - start)))
            with self._lock:
                self._trim()
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the entry
            with self._lock:
                if self._entries.get(key) is future:
                    del self._entries[key]
            future.set_exception(error)
