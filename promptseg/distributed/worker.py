"""The two stages that run on Ray workers: decoding images (CPU tasks) and generating masks
(an actor pool, each actor holding its model once).

Both take and return Ray Data batches in the numpy format: a dict of equal-length columns.
A row that fails keeps flowing with its ``error`` and ``stage`` set, so one bad image never
stops the run; the driver lists it in ``failures.jsonl``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from promptseg.distributed.faults import FaultInjection
from promptseg.distributed.sources import file_name
from promptseg.io import decode_image, error_text

Batch = dict[str, Any]
NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)


def decode_images(batch: Batch, done: frozenset = frozenset()) -> Batch:
    """Read (unless Ray Data read the ``bytes`` already) and decode each row's image, by the rules of
    :func:`promptseg.io.read_image` (EXIF orientation, pixel limit, truncation).

    Args:
        batch: columns ``path`` and, for remote sources, ``bytes``.
        done: file names already done; their rows come out with ``skipped`` set.
    Returns:
        Columns ``name``, ``path``, ``image`` ((H, W, 3) uint8 RGB; (0, 0, 3) when there is none),
        ``skipped``, ``error`` ('' when none) and ``stage``.
    """
    names, paths, images, skipped, errors, stages = [], [], [], [], [], []
    for index, path in enumerate(batch["path"]):
        path = str(path)
        name = file_name(path)
        image, error = NO_IMAGE, ""
        if name not in done:
            try:
                data = bytes(batch["bytes"][index]) if "bytes" in batch else Path(path).read_bytes()
                image = decode_image(data, path)
            except Exception as failure:  # noqa: BLE001 - any unreadable image is reported, not fatal
                error = error_text(failure)
        names.append(name)
        paths.append(path)
        images.append(image)
        skipped.append(name in done)
        errors.append(error)
        stages.append("decode" if error else "")
    return {
        "name": np.array(names, dtype=object),
        "path": np.array(paths, dtype=object),
        "image": _object_array(images),
        "skipped": np.array(skipped, dtype=bool),
        "error": np.array(errors, dtype=object),
        "stage": np.array(stages, dtype=object),
    }


def _object_array(items: list) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


@dataclass(frozen=True)
class WorkerSpec:
    """What each model actor builds.

    Attributes:
        model: model type, or None for the bundled model (with no checkpoint) or the type stored
            in the checkpoint.
        checkpoint: weights file, readable on every worker node; None with no model: bundled.
        device: torch device; None: cuda when the actor was given a GPU, else cpu.
        dtype: a name of :data:`promptseg.settings.DTYPES`.
        threads: torch CPU threads of the actor.
        generator: SamAutomaticMaskGenerator keyword arguments.
        settings: the settings stored in each record.
        mask_pngs: also render one PNG per mask.
        fault: a test hook (:class:`FaultInjection`), or None.
    """

    model: Optional[str]
    checkpoint: Optional[str]
    device: Optional[str]
    dtype: str
    threads: int
    generator: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    mask_pngs: bool = False
    fault: Optional[FaultInjection] = None


class MaskWorker:
    """A Ray Data actor: builds the model once, then generates and renders masks batch by batch."""

    def __init__(self, spec: WorkerSpec) -> None:
        import torch

        from promptseg.automatic import SamAutomaticMaskGenerator
        from promptseg.build import build_sam
        from promptseg.bundled import build_bundled_sam
        from promptseg.sam2.model_types import build_sam2_model, is_sam2_model_type
        from promptseg.settings import dtype_from_name

        torch.set_num_threads(max(1, spec.threads))
        device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype_from_name(spec.dtype)
        if spec.model is None and spec.checkpoint is None:
            model = build_bundled_sam(device=device, dtype=dtype)
        elif is_sam2_model_type(spec.model):
            model = build_sam2_model(spec.model, spec.checkpoint, device=device, dtype=dtype)
        else:
            model = build_sam(spec.model, checkpoint=spec.checkpoint, device=device, dtype=dtype)
        self.spec = spec
        self.generator = SamAutomaticMaskGenerator(model, **spec.generator)
        self.segmented = 0

    def __call__(self, batch: Batch) -> Batch:
        """Adds the columns ``outputs`` (a pickled :class:`promptseg.amg.outputs.ImageOutputs`;
        empty bytes when none) and ``masks``; drops ``image``."""
        from promptseg.amg.outputs import render_image

        if self.spec.fault is not None:
            self.spec.fault.check(self.segmented)
        count = len(batch["name"])
        errors, stages = list(batch["error"]), list(batch["stage"])
        todo = [i for i in range(count) if not errors[i] and not batch["skipped"][i]]
        results = self._generate([np.asarray(batch["image"][i]) for i in todo])
        outputs, masks = [b""] * count, [0] * count
        for i, result in zip(todo, results):
            if isinstance(result, BaseException):
                errors[i], stages[i] = error_text(result), "generate"
                continue
            rendered = render_image(str(batch["name"][i]), np.asarray(batch["image"][i]), result, self.spec.settings,
                                    self.spec.mask_pngs)
            outputs[i], masks[i] = pickle.dumps(rendered), rendered.mask_count
        self.segmented += len(todo)
        return {
            "name": batch["name"],
            "path": batch["path"],
            "skipped": batch["skipped"],
            "error": np.array(errors, dtype=object),
            "stage": np.array(stages, dtype=object),
            "outputs": _object_array(outputs),
            "masks": np.array(masks, dtype=np.int64),
        }

    def _generate(self, images: list[np.ndarray]) -> list:
        """Records per image, batched through the encoder; an image that fails alone gets its exception."""
        if not images:
            return []
        try:
            return self.generator.generate_batch(images, batch_size=len(images))
        except Exception:  # noqa: BLE001 - retry one by one to find the image at fault
            results = []
            for image in images:
                try:
                    results.append(self.generator.generate(image))
                except Exception as failure:  # noqa: BLE001
                    results.append(failure)
            return results
