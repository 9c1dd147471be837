"""Settings that several rooms share, each stated once: the mask generator's settings with their named
presets, the table of dtype names, and the names of the CPU engines.

:class:`GeneratorSettings` holds every argument of :class:`promptseg.SamAutomaticMaskGenerator`
(the official defaults), checked once, here. Presets:

- ``official`` (:data:`OFFICIAL`): the official defaults, tuned for SAM ViT-B/L/H;
- ``bundled`` (:data:`BUNDLED`): for the bundled ``vit_tiny`` model, which predicts lower IoUs and
  stability scores than SAM, so that the official thresholds keep no mask on a photo;

and, derived from them per model, the settings of a purpose (:func:`preset_for`): ``generate``
(``promptseg amg``, the Ray engine), ``prefill`` (the annotation tool's proposals), ``find`` (the
proposals of ``find_instances``) and ``proposals`` (zero-shot object proposals, the paper's looser
filters). Command-line flags default to the preset's value.

A bottom-floor module: it imports nothing of promptseg (numpy and torch only).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields, replace
from typing import Any, Optional

import numpy as np
import torch

# ---------------------------------------------------------------------------------------- dtypes
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""The model precisions by name (``--dtype`` of every command, the Ray workers, the benchmarks)."""


def dtype_from_name(name: str) -> torch.dtype:
    """The torch dtype called ``name`` in :data:`DTYPES`; a ValueError naming them otherwise."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The name of ``dtype`` in :data:`DTYPES` (``torch.bfloat16`` -> ``'bfloat16'``)."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"dtype must be one of {list(DTYPES.values())}, got {dtype}")


# ----------------------------------------------------------------------------- CPU engines
CPU_ENGINES: tuple[str, ...] = ("auto", "torch", "onnxruntime", "onnxruntime-int8")
"""What may embed a model's images on the CPU (``build_sam(engine=...)``, ``--engine``; chosen in
``promptseg.encoders.auto``): ``auto``, the model's torch module, ONNX Runtime on the model's exported
graphs (exact), or the same with a dynamically quantised int8 encoder (approximate)."""
ONNXRUNTIME_ENGINES: tuple[str, ...] = ("onnxruntime", "onnxruntime-int8")
CPU_ENGINE_ENV = "PROMPTSEG_CPU_ENGINE"
"""Environment variable that overrides ``engine="auto"``: one of :data:`CPU_ENGINES` but ``auto``."""


def check_cpu_engine(engine: str, source: str = "engine") -> str:
    """``engine`` if it is one of :data:`CPU_ENGINES`, else a ValueError naming them (and ``source``)."""
    if engine not in CPU_ENGINES:
        raise ValueError(f"{source} must be one of {list(CPU_ENGINES)}, got {engine!r}")
    return engine


# --------------------------------------------------------------------------------- checks
def check_int(name: str, value: Any, minimum: int) -> None:
    """A TypeError unless ``value`` is an int (not a bool), a ValueError if it is below ``minimum``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _checked_point_grids(point_grids: Any, crop_n_layers: int) -> tuple[tuple[tuple[float, float], ...], ...]:
    """The grids as tuples of (x, y) floats, one grid per crop layer (at least crop_n_layers + 1)."""
    if not isinstance(point_grids, (list, tuple)):
        raise TypeError(
            f"point_grids must be a list of (N, 2) arrays, one per crop layer, got {type(point_grids).__name__}"
        )
    if len(point_grids) < crop_n_layers + 1:
        raise ValueError(
            f"point_grids needs one grid per crop layer ({crop_n_layers + 1} for crop_n_layers={crop_n_layers}), "
            f"got {len(point_grids)}"
        )
    grids = []
    for layer, grid in enumerate(point_grids):
        array = np.array(grid, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
            raise ValueError(f"point_grids[{layer}] must have shape (N, 2) with N >= 1, got {array.shape}")
        grids.append(tuple((float(x), float(y)) for x, y in array))
    return tuple(grids)


# ------------------------------------------------------------------------- generator settings
OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
"""The ``output_mode`` values of the mask generator."""


@dataclass(frozen=True)
class GeneratorSettings:
    """Every setting of :class:`promptseg.SamAutomaticMaskGenerator`, with the official defaults.

    Construction checks the values (the generator's checks): a TypeError or ValueError that names
    the setting, what it expects and what came.

    Attributes:
        points_per_side: the grid has points_per_side**2 points on the image; None when
            ``point_grids`` is given.
        points_per_batch: points decoded together; bounds the memory.
        pred_iou_thresh: keep masks whose predicted IoU is above this (0 keeps all).
        stability_score_thresh: keep masks whose stability score is at least this (0 keeps all).
        stability_score_offset: the logit offset of the stability score.
        box_nms_thresh: box IoU above which NMS drops a duplicate within a crop, in [0, 1].
        crop_n_layers: also prompt crops of the image; layer i has (2**i)**2 crops.
        crop_nms_thresh: box IoU above which NMS drops a duplicate between crops, in [0, 1].
        crop_overlap_ratio: overlap of layer-1 crops as a fraction of the short image side.
        crop_n_points_downscale_factor: layer i has points_per_side / factor**i points per side.
        point_grids: explicit grids, one per crop layer, each a tuple of (x, y) in [0, 1] (stored as
            tuples, so that settings compare and hash; give any (N, 2) arrays); exclusive with
            ``points_per_side``.
        min_mask_region_area: if > 0, fill holes and remove islands smaller than this many pixels.
        output_mode: one of :data:`OUTPUT_MODES`.
    """

    points_per_side: Optional[int] = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: Optional[tuple[tuple[tuple[float, float], ...], ...]] = None
    min_mask_region_area: int = 0
    output_mode: str = "binary_mask"

    def __post_init__(self) -> None:
        if (self.points_per_side is None) == (self.point_grids is None):
            raise ValueError(
                "exactly one of points_per_side and point_grids must be given, got "
                f"points_per_side={self.points_per_side!r} and "
                f"point_grids={'None' if self.point_grids is None else 'a list'}"
            )
        check_int("points_per_batch", self.points_per_batch, minimum=1)
        check_int("crop_n_layers", self.crop_n_layers, minimum=0)
        check_int("crop_n_points_downscale_factor", self.crop_n_points_downscale_factor, minimum=1)
        check_int("min_mask_region_area", self.min_mask_region_area, minimum=0)
        for name in (
            "pred_iou_thresh", "stability_score_thresh", "stability_score_offset", "box_nms_thresh",
            "crop_nms_thresh", "crop_overlap_ratio",
        ):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        for name in ("box_nms_thresh", "crop_nms_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {list(OUTPUT_MODES)}, got {self.output_mode!r}")
        if self.points_per_side is not None:
            check_int("points_per_side", self.points_per_side, minimum=1)
            sparsest = int(self.points_per_side / self.crop_n_points_downscale_factor**self.crop_n_layers)
            if sparsest < 1:
                raise ValueError(
                    f"points_per_side={self.points_per_side} with crop_n_points_downscale_factor="
                    f"{self.crop_n_points_downscale_factor} leaves crop layer {self.crop_n_layers} "
                    f"with {sparsest} points per side"
                )
        else:
            object.__setattr__(self, "point_grids", _checked_point_grids(self.point_grids, self.crop_n_layers))

    def replace(self, **overrides: Any) -> "GeneratorSettings":
        """These settings with ``overrides`` (setting name -> value); a value of None keeps the setting
        (a command-line flag left out). ``point_grids`` and ``points_per_side`` exclude each other:
        giving one alone clears the other.

        Raises:
            TypeError: an override names no setting.
        """
        unknown = sorted(set(overrides) - set(SETTING_NAMES))
        if unknown:
            raise TypeError(f"unknown generator setting(s) {unknown}; expected some of {list(SETTING_NAMES)}")
        values = {name: value for name, value in overrides.items() if value is not None}
        if "point_grids" in values:
            values.setdefault("points_per_side", None)
        elif "points_per_side" in values:
            values["point_grids"] = None
        return replace(self, **values)

    def generator_kwargs(self) -> dict[str, Any]:
        """The :class:`promptseg.SamAutomaticMaskGenerator` keyword arguments of these settings
        (``point_grids`` as a list of (N, 2) float64 arrays)."""
        kwargs = {name: getattr(self, name) for name in SETTING_NAMES}
        if self.point_grids is not None:
            kwargs["point_grids"] = [np.array(grid, dtype=np.float64) for grid in self.point_grids]
        return kwargs

    def differences(self, other: "GeneratorSettings") -> dict[str, Any]:
        """The settings whose value differs from ``other``'s: name -> this value."""
        return {name: getattr(self, name) for name in SETTING_NAMES if getattr(self, name) != getattr(other, name)}


SETTING_NAMES: tuple[str, ...] = tuple(field.name for field in fields(GeneratorSettings))
"""The names of the generator settings, in the order of the official signature."""

RUN_SETTINGS = ("points_per_side", "pred_iou_thresh", "stability_score_thresh", "crop_n_layers", "min_mask_region_area")
"""The settings ``promptseg amg`` takes as flags and that a run (either engine) stores in each record."""

OFFICIAL = GeneratorSettings()
"""The official defaults (segment_anything's SamAutomaticMaskGenerator), for SAM ViT-B/L/H."""

BUNDLED = replace(OFFICIAL, pred_iou_thresh=0.5, stability_score_thresh=0.7)
"""For the bundled vit_tiny model, trained on synthetic scenes only: its predicted IoUs run below
0.88 and its stability scores below 0.95 on photos, so the official preset keeps no mask there.
Measured on truck.jpg, dog.jpg, groceries.jpg and synthetic scenes (docs/amg.md)."""

PRESETS: dict[str, GeneratorSettings] = {"official": OFFICIAL, "bundled": BUNDLED}
"""The named presets."""

PURPOSES = ("generate", "prefill", "find", "proposals")
"""What a generator is built for (:func:`preset_for`)."""

_PURPOSE_CHANGES: dict[tuple[str, str], dict[str, Any]] = {
    # The annotation tool's pre-fill: a coarser grid, for a quick answer, and filters between the
    # generator's and the proposals' (an annotator reviews each proposal: fewer, cleaner ones).
    ("official", "prefill"): {"points_per_side": 16, "pred_iou_thresh": 0.8, "stability_score_thresh": 0.9},
    ("bundled", "prefill"): {"points_per_side": 16, "stability_score_thresh": 0.8},
    # find_instances: a 12 x 12 grid covers the instances of a 256-pixel scene (on validation
    # scenes 82% of instances at IoU 0.5 with ~9 proposals); the concept encoder filters the rest.
    ("bundled", "find"): {"points_per_side": 12},
    # Zero-shot proposals (the paper's section 7.3): looser filters, so that enough masks fill the budget.
    ("official", "proposals"): {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.7},
}


def preset_name(model_type: Optional[str], checkpoint: Any = None) -> str:
    """``bundled`` for the bundled model (no model type and no checkpoint, as the commands take it)
    and for any ``vit_tiny`` (the architecture promptseg trains on synthetic scenes); ``official``
    for everything else (a checkpoint whose type is read from the file counts as official)."""
    if model_type == "vit_tiny" or (model_type is None and checkpoint is None):
        return "bundled"
    return "official"


def preset(name: str, purpose: str = "generate") -> GeneratorSettings:
    """The preset ``name`` (``official`` or ``bundled``, :data:`PRESETS`) for ``purpose`` (:data:`PURPOSES`)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {name!r}")
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {list(PURPOSES)}, got {purpose!r}")
    return PRESETS[name].replace(**_PURPOSE_CHANGES.get((name, purpose), {}))


def preset_for(model_type: Optional[str], checkpoint: Any = None, purpose: str = "generate") -> GeneratorSettings:
    """The generator settings for a model (:func:`preset_name`) and a purpose (:data:`PURPOSES`).

    Args:
        model_type: the model type name (``--model``), or None: with no checkpoint either, the bundled model.
        checkpoint: the weights file (``--checkpoint``), or None.
        purpose: ``generate`` (the preset itself), ``prefill``, ``find`` or ``proposals``.
    """
    return preset(preset_name(model_type, checkpoint), purpose)
