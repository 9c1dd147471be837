"""Exporting a model's graphs once into the CPU engine's cache (:mod:`promptseg.encoders.cache`).

:func:`prepare_engine` is what ``promptseg.build_sam(..., engine="onnxruntime")`` runs (and the CLI):
where the model asks for an ONNX Runtime engine, :func:`prepare_cpu_engine` writes the
float32 image encoder and the batched decoder (and, for int8, a dynamically quantised encoder whose
agreement with float32 it measures) unless the cache has them already. Entries appear atomically:
a new entry is exported into a scratch folder beside it and renamed into place, and a file added
later (the int8 encoder, the updated description) is written to a scratch file and renamed; a
crashed export leaves no entry that a reader would take for complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from promptseg.encoders.auto import requested_engine
from promptseg.encoders.cache import CACHE_OPSET, DESCRIPTION_FILE, CacheEntry, entry_for, model_label, versions, weights_hash
from promptseg.export.int8_accuracy import INT8_MIN_MASK_IOU, measure_int8_agreement
from promptseg.export.onnx_decoder import export_onnx_batched_decoder
from promptseg.export.onnx_encoder import export_onnx_encoder
from promptseg.export.onnx_quantize import quantize_encoder_int8
from promptseg.io import atomic_path, write_json_atomically
from promptseg.modeling import Sam
from promptseg.settings import ONNXRUNTIME_ENGINES


def prepare_engine(model: Sam) -> Sam:
    """Export ``model``'s graphs to the cache (once) where its requested CPU engine is an ONNX Runtime
    one: ``model.image_encoder.engine`` (``build_sam(engine=...)``), or ``$PROMPTSEG_CPU_ENGINE`` for
    ``auto``. The override applies to float32 models on the CPU only; others are returned as they are.
    Returns ``model``, unchanged."""
    wanted, _ = requested_engine(model)
    if wanted in ONNXRUNTIME_ENGINES and model.device.type == "cpu" and model.dtype == torch.float32:
        prepare_cpu_engine(model, int8=wanted == "onnxruntime-int8")
    return model


def prepare_cpu_engine(
    model: Sam, *, int8: bool = False, cache_dir: Optional[os.PathLike] = None, progress: bool = True
) -> CacheEntry:
    """The cache entry of ``model``'s ONNX Runtime graphs, exported unless it is there.

    Args:
        model: a float32 SAM on the CPU; it is not modified.
        int8: also make (once) the dynamically quantised encoder and measure its agreement with the
            float32 one on held-out synthetic scenes (``entry.description()["int8"]``). A mean mask
            IoU below :data:`~promptseg.export.int8_accuracy.INT8_MIN_MASK_IOU` is warned about.
        cache_dir: the cache (default ``promptseg.encoders.cache.default_cache_dir()``).
        progress: show a progress bar while exporting (the first time only).
    Returns:
        The complete entry.
    """
    entry = entry_for(model, Path(cache_dir) if cache_dir is not None else None, CACHE_OPSET)
    if not entry.complete:
        _export_entry(model, entry, progress)
    if int8 and not entry.has_int8:
        _add_int8_encoder(model, entry, progress)
    if int8:
        agreement = entry.description()["int8"]
        if agreement["mean_mask_iou"] < INT8_MIN_MASK_IOU:
            warnings.warn(
                f"the int8 encoder of this model agrees with float32 on a mean mask IoU of "
                f"{agreement['mean_mask_iou']:.3f} (< {INT8_MIN_MASK_IOU}) on {agreement['scenes']} held-out scenes: "
                "its masks are not those of the model; use engine='onnxruntime' (exact)",
                stacklevel=2,
            )
    return entry


def _export_entry(model: Sam, entry: CacheEntry, progress: bool) -> None:
    """Export the float32 graphs into a scratch folder, describe them, and rename it to ``entry.folder``."""
    entry.folder.parent.mkdir(parents=True, exist_ok=True)
    label = model_label(model)
    seconds: dict[str, float] = {}
    scratch = Path(tempfile.mkdtemp(prefix=f".{entry.folder.name}-", dir=entry.folder.parent))
    try:
        staged = CacheEntry(scratch)
        steps = (("encoder", lambda: export_onnx_encoder(model, staged.encoder, opset=CACHE_OPSET)),
                 ("decoder", lambda: export_onnx_batched_decoder(model, staged.decoder, opset=CACHE_OPSET)))
        with tqdm(total=len(steps), desc=f"exporting {label} for ONNX Runtime (once)", unit="graph", disable=not progress) as bar:
            for name, export in steps:
                bar.set_postfix_str(name)
                start = time.perf_counter()
                export()
                seconds[name] = round(time.perf_counter() - start, 1)
                bar.update()
        description = {
            "model": label,
            "weights_sha256": weights_hash(model),
            "opset": CACHE_OPSET,
            "versions": versions(),
            "export_seconds": seconds,
            "image_size": model.image_encoder.img_size,
        }
        write_json_atomically(scratch / DESCRIPTION_FILE, description)
        if entry.folder.exists():  # an incomplete leftover, or a concurrent export that finished first
            if entry.complete:
                return
            shutil.rmtree(entry.folder)
        os.replace(scratch, entry.folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _add_int8_encoder(model: Sam, entry: CacheEntry, progress: bool) -> None:
    """Quantise the entry's encoder, measure it against float32, and add both to the entry."""
    with atomic_path(entry.int8_encoder) as scratch:
        with tqdm(total=2, desc="making the int8 encoder (once)", unit="step", disable=not progress) as bar:
            bar.set_postfix_str("quantise")
            start = time.perf_counter()
            quantize_encoder_int8(entry.encoder, scratch)
            quantize_seconds = round(time.perf_counter() - start, 1)
            bar.update()
            bar.set_postfix_str("measure against float32")
            agreement = measure_int8_agreement(model, entry.encoder, scratch)
            bar.update()
    description = entry.description()
    description["int8"] = {**agreement, "quantize_seconds": quantize_seconds}
    write_json_atomically(entry.description_path, description)
