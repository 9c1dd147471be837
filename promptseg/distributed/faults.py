"""A fault-injection hook for tests: a model actor's process dies after it has segmented K images."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FaultInjection:
    """Kill a model actor's process (``os._exit``), once, to exercise Ray's actor restart and
    task retry: the run must still complete with every image.

    Attributes:
        after_images: the actor dies on its next batch once it has segmented this many images.
        marker: a file created just before dying; while it exists no actor dies again (otherwise
            every restarted actor would die in turn). It must be on a file system the actors share.
    """

    after_images: int
    marker: str

    def __post_init__(self) -> None:
        if not isinstance(self.after_images, int) or isinstance(self.after_images, bool) or self.after_images < 0:
            raise ValueError(f"after_images must be an int >= 0, got {self.after_images!r}")

    def check(self, segmented: int) -> None:
        """Called by the actor before each batch, with the images it has segmented so far."""
        if segmented < self.after_images:
            return
        marker = Path(self.marker)
        if marker.exists():
            return
        marker.touch()
        os._exit(1)
