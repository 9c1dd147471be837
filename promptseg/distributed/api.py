"""``generate_masks``: automatic mask generation over a dataset, as a Ray Data pipeline.

    source ──list──▶ paths (done images dropped) ──decode (CPU tasks)──▶ images
           ──MaskWorker actor pool (model held once per actor, GPU or CPU)──▶ rendered files
           ──driver──▶ records/, overlays/, [masks/], failures.jsonl, annotations.json, results.json

Ray Data's streaming executor runs the stages at once and holds them back when the object store
fills (backpressure); each actor has at most two batches queued. Ray Data restarts a model actor
whose process dies (``max_restarts=-1``) and retries its batch (``max_task_retries=-1``), its
defaults for actor pools; an image that fails to decode or segment is a row with an error,
listed in ``failures.jsonl``, never a failed task.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Union

from promptseg.amg.outputs import run_settings, write_coco
from promptseg.distributed.cluster import cluster_gpus, connect, require_ray
from promptseg.distributed.faults import FaultInjection
from promptseg.distributed.sources import SourceLike, file_name, resolve_source
from promptseg.distributed.worker import MaskWorker, WorkerSpec, decode_images
from promptseg.distributed.writer import RunSummary, RunWriter
from promptseg.io import IMAGE_SUFFIXES, RunRecords
from promptseg.settings import RUN_SETTINGS, GeneratorSettings, dtype_from_name, preset_for

IN_FLIGHT_PER_ACTOR = 2
MAX_READ_BLOCKS = 20_000


def generate_masks(
    source: SourceLike,
    out: Union[str, os.PathLike],
    *,
    model: Optional[str] = None,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    device: Optional[str] = None,
    dtype: str = "float32",
    settings: Optional[GeneratorSettings] = None,
    mask_pngs: bool = False,
    address: Optional[str] = None,
    workers: int = 1,
    gpus_per_worker: Optional[float] = None,
    cpus_per_worker: float = 1,
    batch_size: int = 1,
    fault_injection: Optional[FaultInjection] = None,
    verbose: bool = True,
    retry_failed: bool = True,
    **overrides: Any,
) -> RunSummary:
    """Segment every image of ``source`` into ``out``, in the files of ``promptseg amg``.

    Args:
        source: a folder, an image, a file list (.txt, one path or URI per line), a glob, a
            sequence of paths, or remote URIs Ray Data reads (s3://, gs://).
        out: output folder, on a file system the driver writes (see :mod:`promptseg.amg.outputs`).
            Images with a record there are skipped: a re-run resumes.
        model, checkpoint, device, dtype: as ``promptseg amg``; no model and no checkpoint: the
            bundled model. The checkpoint must be readable on every worker node.
        settings: the mask generator's settings; None: the model's preset
            (:func:`promptseg.settings.preset_for`: the bundled preset for the bundled model).
        mask_pngs: also write one PNG per mask (``--format png``).
        address: Ray cluster to join; None: ``RAY_ADDRESS`` if set, else a local Ray. A Ray
            already initialised in this process is used as it is.
        workers: model actors. gpus_per_worker: GPUs each (None: 1 when the cluster has GPUs, else 0).
        cpus_per_worker: CPUs each (and torch threads, on the CPU).
        batch_size: images per decode task and per actor call (encoded together).
        fault_injection: a test hook that kills an actor once (:class:`FaultInjection`).
        verbose: print the plan, Ray Data's progress and the summary line.
        retry_failed: process again the images an earlier run listed in ``failures.jsonl``; False
            leaves them out and listed (``promptseg amg`` without ``--retry-failed``).
        overrides: generator settings to change (setting name -> value; None keeps the
            setting), e.g. ``points_per_side=16``.
    Returns:
        A :class:`RunSummary` (images, masks, images/s, failures).
    """
    for name, value in (("workers", workers), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    for name, value in (("gpus_per_worker", gpus_per_worker), ("cpus_per_worker", cpus_per_worker)):
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    dtype_from_name(dtype)
    generator = (preset_for(model, checkpoint) if settings is None else settings).replace(**overrides)
    ray = require_ray()
    out = Path(out)
    images = resolve_source(source)
    settings_record = run_settings(
        model, str(checkpoint) if checkpoint is not None else None, dtype,
        **{name: getattr(generator, name) for name in RUN_SETTINGS},
    )
    records = RunRecords(out)
    plan = records.plan([] if images.remote else images.paths, name=file_name, retry_failed=retry_failed)
    todo = list(images.paths) if images.remote else list(plan.todo)
    skipped_before = len(plan.done)
    if verbose:
        where = "remote source, done images skipped as they are read" if images.remote else plan.line(out)
        print(where)
        if model is not None and checkpoint is None:
            print("WARNING: no checkpoint was given, so the model has RANDOM WEIGHTS", file=sys.stderr)
    records.warn_on_other_settings(settings_record)

    started_ray = connect(address, min_cpus=math.ceil(workers * cpus_per_worker) + 1)
    try:
        gpus = (1.0 if cluster_gpus() > 0 else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
        spec = WorkerSpec(
            model=model, checkpoint=str(Path(checkpoint).resolve()) if checkpoint is not None else None,
            device=device, dtype=dtype, threads=max(1, int(cpus_per_worker)),
            generator=generator.generator_kwargs(), settings=settings_record, mask_pngs=mask_pngs,
            fault=fault_injection,
        )
        writer = RunWriter(out, keep_failures=[file_name(path) for path in plan.failed])
        started = time.perf_counter()
        if todo:
            done = records.done_names() if images.remote else frozenset()
            dataset = _pipeline(ray, images.remote, todo, done, spec, workers, gpus, cpus_per_worker, batch_size)
            writer.consume(dataset.iter_rows())
        names = sorted(writer.names) if images.remote else [file_name(p) for p in images.paths]
        write_coco(out, names)
        summary = writer.summary(len(writer.names) if images.remote else len(images.paths), skipped_before, started)
    finally:
        if started_ray:
            ray.shutdown()
    if verbose:
        print(summary.line())
        print(f"wrote {out / 'annotations.json'} and {out / 'results.json'}")
    return summary


def _pipeline(ray, remote, todo, done, spec, workers, gpus, cpus_per_worker, batch_size):
    """read → decode (CPU tasks) → MaskWorker actor pool; a lazy Ray Dataset of result rows."""
    if remote:
        dataset = ray.data.read_binary_files(todo, include_paths=True, file_extensions=_extensions())
    else:
        blocks = max(1, min(MAX_READ_BLOCKS, math.ceil(len(todo) / batch_size)))
        dataset = ray.data.from_items([{"path": path} for path in todo], override_num_blocks=blocks)
    dataset = dataset.map_batches(
        decode_images, batch_size=batch_size, batch_format="numpy", fn_kwargs={"done": done}, num_cpus=0.5
    )
    return dataset.map_batches(
        MaskWorker,
        fn_constructor_kwargs={"spec": spec},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=IN_FLIGHT_PER_ACTOR),
        num_cpus=cpus_per_worker,
        num_gpus=gpus,
    )


def _extensions() -> list[str]:
    return [suffix.lstrip(".") for suffix in IMAGE_SUFFIXES]
