"""Where the CPU engine's exported graphs of a model live, and what they are keyed by. Pure Python:
nothing here needs ``onnx`` or ``onnxruntime`` (``promptseg.export.onnxruntime_cache`` writes entries).

An entry is a folder ``<cache>/onnxruntime/<label>-<weights>-<identity>/`` holding ``encoder.onnx``,
``decoder_batched.onnx``, optionally ``encoder_int8.onnx``, and ``entry.json`` (written last, so an
entry without it is incomplete). Its name holds the model type (a label for people), a digest of
the weights, and a digest of everything else the graphs depend on: the opset, the versions of
promptseg, torch and onnx, and the cache format. A change of any of them makes a new entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from promptseg.checkpoint import identify_model_type

CACHE_ENV = "PROMPTSEG_CACHE_DIR"
"""Environment variable naming the cache root (also TensorRT's, see promptseg.export.tensorrt.cache)."""
CACHE_FORMAT_VERSION = 2
"""Bumped when the exported graphs change in a way that makes older entries wrong."""
CACHE_OPSET = 17
"""The opset of the CPU engine's graphs."""
ENCODER_FILE = "encoder.onnx"
INT8_ENCODER_FILE = "encoder_int8.onnx"
DECODER_FILE = "decoder_batched.onnx"
DESCRIPTION_FILE = "entry.json"

_HASHES: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def weights_hash(model: nn.Module) -> str:
    """sha256 hex digest of ``model``'s state dict: every name, dtype, shape and value, in name order.

    The digest is remembered per model while no tensor of it is replaced, moved or changed in place
    (PyTorch counts in-place changes per tensor), so asking again costs a scan of the names only.
    """
    state = sorted(model.state_dict().items())
    signature = tuple((name, tensor.data_ptr(), tensor._version, tensor.dtype, tuple(tensor.shape)) for name, tensor in state)
    remembered = _HASHES.get(model)
    if remembered is not None and remembered[0] == signature:
        return remembered[1]
    digest = hashlib.sha256()
    for name, tensor in state:
        tensor = tensor.detach()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.contiguous().view(-1)
        if flat.numel():
            digest.update(flat.view(torch.uint8).cpu().numpy().tobytes())
    _HASHES[model] = (signature, digest.hexdigest())
    return digest.hexdigest()


def model_label(model: nn.Module) -> str:
    """The registry name of the model's architecture (``vit_b``, ``vit_tiny``...), else ``custom``."""
    return identify_model_type(model.state_dict()) or "custom"


def default_cache_dir() -> Path:
    """``$PROMPTSEG_CACHE_DIR/onnxruntime``, else ``$XDG_CACHE_HOME/promptseg/onnxruntime``, else
    ``~/.cache/promptseg/onnxruntime``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "onnxruntime"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "promptseg" / "onnxruntime"


def versions() -> dict[str, str]:
    """The versions an entry's graphs depend on: promptseg (its export code), torch (its exporter), onnx."""
    found = {}
    for package in ("promptseg", "torch", "onnx"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    if found["promptseg"] == "absent":  # a source checkout that was never installed
        from promptseg.version import __version__

        found["promptseg"] = __version__
    found["torch"] = torch.__version__
    return found


def entry_name(label: str, weights_digest: str, opset: int = CACHE_OPSET) -> str:
    """Folder name of an entry, e.g. ``vit_b-1a2b3c4d5e6f7a8b-0f1e2d3c4b5a``."""
    identity = json.dumps(
        {"format": CACHE_FORMAT_VERSION, "weights": weights_digest, "opset": opset, **versions()}, sort_keys=True
    )
    return f"{label}-{weights_digest[:16]}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class CacheEntry:
    """One model's exported graphs in the cache.

    Attributes:
        folder: the entry's folder.
    """

    folder: Path

    @property
    def encoder(self) -> Path:
        """The float32 image encoder graph."""
        return self.folder / ENCODER_FILE

    @property
    def int8_encoder(self) -> Path:
        """The dynamically quantised image encoder graph (present once asked for)."""
        return self.folder / INT8_ENCODER_FILE

    @property
    def decoder(self) -> Path:
        """The batched decoder graph."""
        return self.folder / DECODER_FILE

    @property
    def description_path(self) -> Path:
        return self.folder / DESCRIPTION_FILE

    @property
    def complete(self) -> bool:
        """Whether the entry was written to the end (its description is written last)."""
        return self.description_path.is_file()

    @property
    def has_int8(self) -> bool:
        return self.int8_encoder.is_file() and "int8" in self.description()

    def description(self) -> dict[str, Any]:
        """``entry.json``: the model label, weights digest, versions, opset, export seconds, and for
        int8 its measured accuracy."""
        return json.loads(self.description_path.read_text())


def entry_for(model: nn.Module, cache_dir: Optional[Path] = None, opset: int = CACHE_OPSET) -> CacheEntry:
    """The entry of ``model`` (complete or not) in ``cache_dir`` (default :func:`default_cache_dir`)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return CacheEntry(folder / entry_name(model_label(model), weights_hash(model), opset))


def find_entry(model: nn.Module, cache_dir: Optional[Path] = None, opset: int = CACHE_OPSET) -> Optional[CacheEntry]:
    """The complete entry of ``model``, or None. Without any entry of the model's architecture in the
    cache this is a directory listing (the weights are not hashed)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not any(folder.glob(f"{model_label(model)}-*/{DESCRIPTION_FILE}")):
        return None
    entry = entry_for(model, folder, opset)
    return entry if entry.complete else None
