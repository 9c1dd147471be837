"""Text prompt weights in promptseg checkpoints.

A promptseg text checkpoint is a ``.safetensors`` file holding the :class:`TextPromptEncoder`'s
weights under :data:`TEXT_PREFIX` and, beside them, SAM weights under their official names:
either a whole model (what ``promptseg train --text`` writes; ``build_sam`` loads such a file and
leaves the text keys out) or only the modules the text training changed (the bundled
``vit_tiny_text.safetensors`` holds ``mask_decoder.*``, applied on the bundled model). The file's
metadata records the text encoder's shape and which concept encoder its inputs come from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import nn

from promptseg.checkpoint import EXTENSION_PREFIXES, read_state_dict, safetensors_metadata
from promptseg.errors import CheckpointError
from promptseg.io import write_bytes_atomically
from promptseg.text.prompt_encoder import TextPromptEncoder

PathLike = Union[str, "os.PathLike[str]"]
TEXT_PREFIX = EXTENSION_PREFIXES[0]
"""Key prefix of the text prompt encoder's weights: ``text_prompt_encoder.``."""
METADATA_KEY = "promptseg_text"


@dataclass
class TextCheckpoint:
    """What a text checkpoint holds.

    Attributes:
        text_state: the text prompt encoder's state dict (prefix removed).
        sam_state: SAM weights under their official names (the whole model, or some modules).
        config: :meth:`TextPromptEncoder.config` of the text prompt encoder.
        concept_encoder: description of the concept encoder the text weights were trained with.
        extra: any other metadata stored with it.
    """

    text_state: dict[str, torch.Tensor]
    sam_state: dict[str, torch.Tensor]
    config: dict[str, int]
    concept_encoder: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def has_whole_model(self) -> bool:
        """Whether ``sam_state`` holds a whole SAM (an image encoder included)."""
        return any(key.startswith("image_encoder.") for key in self.sam_state)

    def prompt_encoder(self) -> TextPromptEncoder:
        """The text prompt encoder with its weights loaded (on the CPU, float32)."""
        module = TextPromptEncoder.from_config(self.config)
        module.load_state_dict(self.text_state, strict=True)
        return module


def text_state_dict(prompt_encoder: TextPromptEncoder) -> dict[str, torch.Tensor]:
    """The text prompt encoder's weights under :data:`TEXT_PREFIX` (fp32, CPU, contiguous)."""
    return {TEXT_PREFIX + key: value.detach().float().cpu().contiguous() for key, value in prompt_encoder.state_dict().items()}


def save_text_checkpoint(
    path: PathLike,
    prompt_encoder: TextPromptEncoder,
    model: Optional[nn.Module] = None,
    modules: Optional[Sequence[str]] = None,
    concept_encoder: str = "",
    extra: Optional[Mapping[str, str]] = None,
) -> Path:
    """Write a text checkpoint (atomically) and return its path.

    Args:
        prompt_encoder: the text weights.
        model: a SAM whose weights go with them, or None.
        modules: only these top-level modules of ``model`` (e.g. ``["mask_decoder"]``); None: all.
        concept_encoder: which concept encoder produced the embeddings it was trained on.
        extra: more metadata (strings).
    """
    from safetensors.torch import save

    path = Path(path)
    state = text_state_dict(prompt_encoder)
    if model is not None:
        for key, value in model.state_dict().items():
            if modules is None or key.split(".", 1)[0] in modules:
                state[key] = value.detach().float().cpu().contiguous()
    metadata = {
        METADATA_KEY: json.dumps({"config": prompt_encoder.config(), "concept_encoder": concept_encoder, **dict(extra or {})})
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(path, save(state, metadata=metadata))
    return path


def read_text_checkpoint(path: PathLike) -> TextCheckpoint:
    """Read a text checkpoint.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file holds no text prompt weights (say how to get them).
    """
    path = Path(path)
    state = read_state_dict(path)
    text_state = {key[len(TEXT_PREFIX):]: value for key, value in state.items() if key.startswith(TEXT_PREFIX)}
    if not text_state:
        raise CheckpointError(
            f"{str(path)!r} holds no text prompt weights (no '{TEXT_PREFIX}*' keys); train them with "
            "`promptseg train --text` or use the bundled ones (promptseg.text.load_text_model())"
        )
    sam_state = {key: value for key, value in state.items() if not key.startswith(TEXT_PREFIX)}
    info = _metadata(path)
    config = info.pop("config", None) or _infer_config(text_state)
    return TextCheckpoint(
        text_state=text_state,
        sam_state=sam_state,
        config={key: int(value) for key, value in config.items()},
        concept_encoder=str(info.pop("concept_encoder", "")),
        extra={key: str(value) for key, value in info.items()},
    )


def _metadata(path: Path) -> dict:
    if path.suffix != ".safetensors":
        return {}
    stored = safetensors_metadata(path).get(METADATA_KEY)
    try:
        return json.loads(stored) if stored else {}
    except ValueError as error:
        raise CheckpointError(f"{str(path)!r}: its {METADATA_KEY!r} metadata is not JSON ({error})") from None


def _infer_config(text_state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The text prompt encoder's shape read from its weights (for files without metadata)."""
    try:
        first, last, slots = text_state["mlp.0.weight"], text_state["mlp.4.weight"], text_state["token_embed"]
    except KeyError as error:
        raise CheckpointError(f"text prompt weights lack {error.args[0]!r}; not a TextPromptEncoder") from None
    return {"concept_dim": first.shape[1], "hidden_dim": first.shape[0], "num_tokens": slots.shape[0], "embed_dim": slots.shape[1]}
