"""Where built engines live and what they are keyed by. Pure Python: nothing here needs TensorRT.

An engine is valid only for the weights, the GPU model, the TensorRT version,
the precision and the shape profile it was built with; its file name holds a
digest of all five, so a change of any of them builds a new engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Optional

from promptseg.encoders.cache import weights_hash
from promptseg.export.profiles import Profile

# weights_hash is shared with the ONNX Runtime cache (promptseg.encoders.cache) and re-exported here.
__all__ = [
    "CACHE_ENV", "ENGINE_FORMAT_VERSION", "PRECISIONS", "check_precision", "default_cache_dir", "engine_key",
    "engine_path", "timing_cache_path", "weights_hash",
]

CACHE_ENV = "PROMPTSEG_CACHE_DIR"
PRECISIONS = ("fp32", "fp16", "bf16")
ENGINE_FORMAT_VERSION = 1
"""Bumped when the exported graphs change in a way that makes older cached engines wrong."""


def check_precision(precision: str) -> None:
    """Raise ValueError unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")


def engine_key(
    *, kind: str, weights_digest: str, gpu_name: str, tensorrt_version: str, precision: str, profile: Profile
) -> str:
    """File stem of the cached engine, e.g. ``encoder-fp16-1a2b3c4d5e6f7a8b-0f1e2d3c4b5a``.

    Args:
        kind: which graph, "encoder" or "decoder".
        weights_digest: :func:`weights_hash` of the model.
        gpu_name: ``torch.cuda.get_device_name()`` of the building GPU.
        tensorrt_version: ``tensorrt.__version__``.
        precision: one of :data:`PRECISIONS`.
        profile: the engine's optimisation profile.
    """
    check_precision(precision)
    if not re.fullmatch(r"[a-z_]+", kind):
        raise ValueError(f"kind must be a lower-case word such as 'encoder', got {kind!r}")
    identity = json.dumps(
        {
            "format": ENGINE_FORMAT_VERSION,
            "kind": kind,
            "weights": weights_digest,
            "gpu": gpu_name,
            "tensorrt": tensorrt_version,
            "precision": precision,
            "profile": {name: [list(shape) for shape in shapes] for name, shapes in sorted(profile.items())},
        },
        sort_keys=True,
    )
    return f"{kind}-{precision}-{weights_digest[:16]}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def default_cache_dir() -> Path:
    """``$PROMPTSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/promptseg/tensorrt``, else ``~/.cache/promptseg/tensorrt``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "promptseg" / "tensorrt"


def engine_path(key: str, cache_dir: Optional[Path] = None) -> Path:
    """The engine file of ``key`` in ``cache_dir`` (default :func:`default_cache_dir`)."""
    return (cache_dir or default_cache_dir()) / f"{key}.engine"


def timing_cache_path(gpu_name: str, tensorrt_version: str, cache_dir: Optional[Path] = None) -> Path:
    """The TensorRT timing cache shared by all builds on one GPU model with one TensorRT version."""
    gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
    return (cache_dir or default_cache_dir()) / f"timing-{gpu_slug}-trt{tensorrt_version}.cache"
