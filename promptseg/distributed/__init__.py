"""Dataset-scale automatic mask generation on Ray (``promptseg amg --engine ray``).

:func:`generate_masks` runs a Ray Data pipeline (decode on CPU tasks, masks in an actor pool that
holds the model once per actor) and writes the local engine's files. Ray is imported only when a
run starts; without it :class:`RayNotInstalledError` says ``pip install "promptseg[ray]"``.
"""

from promptseg.distributed.api import generate_masks
from promptseg.distributed.cluster import INSTALL_HINT, RayNotInstalledError
from promptseg.distributed.faults import FaultInjection
from promptseg.distributed.sources import ImageSource, resolve_source
from promptseg.distributed.writer import RunSummary

__all__ = [
    "INSTALL_HINT",
    "FaultInjection",
    "ImageSource",
    "RayNotInstalledError",
    "RunSummary",
    "generate_masks",
    "resolve_source",
]
