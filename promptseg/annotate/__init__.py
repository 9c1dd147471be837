"""The data engine's first two stages: a local, browser-based assisted annotation tool.

``promptseg annotate IMAGE_DIR --out annotations.json`` serves a single page (``static/``) and a JSON
API under ``/api`` (``server.py``, documented in docs/annotate.md). Clicks are decoded by a
:class:`~promptseg.predictor.SamPredictor` per image (``cache.py``: embeddings kept in an LRU cache and
computed ahead for the next image); pre-fill proposals come from
:class:`~promptseg.automatic.SamAutomaticMaskGenerator`; accepted objects go to a COCO file written
atomically after every change (``store.py``), each change an operation of one per-image history that
undo, redo and replay use (``history.py``). ``formats/`` exports the file as COCO (RLE or polygons),
YOLO-seg or PNG masks. The server side needs ``pip install "promptseg[annotate]"``.

Nothing a client or the image folder sends reaches native code unbounded: requests pass ``guard.py``
(Host, cross-site, JSON content type, size, security headers), bodies ``jsonbody.py`` (depth, numbers),
polygons ``polygon_input.py`` (vertices, extent, clipped to the image), RLEs and labels their checks in
``coco_masks.py`` and ``labels.py``; unreadable images are listed as unavailable (``images.py``).
"""

from promptseg.annotate.cache import EmbeddingCache
from promptseg.annotate.errors import ApiError
from promptseg.annotate.images import list_images
from promptseg.annotate.server import create_app, require_server_packages
from promptseg.annotate.service import AnnotationService
from promptseg.annotate.store import AnnotationStore

__all__ = [
    "AnnotationService", "AnnotationStore", "ApiError", "EmbeddingCache", "create_app", "list_images",
    "require_server_packages",
]
