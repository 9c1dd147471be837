"""``TextPrompting``: what a ``SamPredictor`` needs for text prompts, and loading it.

A text prompt goes: phrase -> concept encoder ``encode_text`` (N, D) -> :class:`TextPromptEncoder`
(N, k, C) -> sparse tokens after the prompt's point/box tokens -> the model's mask decoder.

    >>> sam, text = load_text_model()                    # the bundled vit_tiny and its text weights
    >>> predictor = SamPredictor(sam, text=text)
    >>> predictor.set_image(image)
    >>> masks, scores, _ = predictor.predict(text="red ellipse", multimask_output=False)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import torch

from promptseg.bundled import build_bundled_sam, bundled_weights_file
from promptseg.checkpoint import identify_model_type
from promptseg.errors import CheckpointError
from promptseg.text.checkpoint import read_text_checkpoint
from promptseg.text.prompt_encoder import TextPromptEncoder
from promptseg.text.understanding import understood_text

if TYPE_CHECKING:
    from promptseg.modeling import Sam

BUNDLED_TEXT_WEIGHTS = "vit_tiny_text.safetensors"
NO_TEXT_WEIGHTS = (
    "this predictor has no text prompt weights. Build it with them: `sam, text = "
    "promptseg.text.load_text_model()` (the bundled vit_tiny with its text weights) or "
    "`load_text_model(checkpoint=PATH, concept_encoder=...)` for weights trained with `promptseg train --text`, "
    "then `SamPredictor(sam, text=text)`"
)


class TextPrompting:
    """A concept encoder and the text prompt encoder trained on its embeddings.

    Args:
        concept_encoder: has ``dim`` and ``encode_text(list[str]) -> (N, D)`` (a
            ``promptseg.text.ConceptEncoder``).
        prompt_encoder: maps its D-dim embeddings to tokens of the SAM model's prompt width.
    """

    def __init__(self, concept_encoder: Any, prompt_encoder: TextPromptEncoder) -> None:
        if not callable(getattr(concept_encoder, "encode_text", None)):
            raise TypeError(f"concept_encoder must have encode_text(list[str]), got {type(concept_encoder).__name__}")
        if not isinstance(prompt_encoder, TextPromptEncoder):
            raise TypeError(f"prompt_encoder must be a TextPromptEncoder, got {type(prompt_encoder).__name__}")
        dim = getattr(concept_encoder, "dim", None)
        if dim is not None and int(dim) != prompt_encoder.concept_dim:
            raise ValueError(
                f"the concept encoder gives {dim}-dim embeddings but the text prompt encoder takes "
                f"{prompt_encoder.concept_dim}; use the concept encoder the text weights were trained with"
            )
        self.concept_encoder = concept_encoder
        self.prompt_encoder = prompt_encoder.eval()

    def check_model(self, model: "Sam") -> None:
        """Raise ValueError when the tokens would not fit ``model``'s prompt width."""
        width = model.prompt_encoder.embed_dim
        if width != self.prompt_encoder.embed_dim:
            raise ValueError(
                f"the text prompt encoder makes {self.prompt_encoder.embed_dim}-wide tokens but the model's prompts "
                f"are {width} wide; load text weights trained for this model"
            )

    def to(self, device: Union[str, torch.device, None] = None, dtype: Optional[torch.dtype] = None) -> "TextPrompting":
        """Move the text prompt encoder (in place) and return self."""
        self.prompt_encoder.to(device=device, dtype=dtype)
        return self

    @torch.no_grad()
    def tokens(self, texts: Sequence[str], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(N, k, C) sparse prompt tokens of N phrases, on ``device`` in ``dtype``.

        Each phrase is checked first (:func:`promptseg.text.understanding.understood_text`): words
        outside the concept encoder's vocabulary are named in an ``UnknownWordsWarning``, and a
        phrase with no known word raises ``UnknownTextError`` (a ValueError).
        """
        for text in texts:
            understood_text(self.concept_encoder, text)
        embeddings = self.concept_encoder.encode_text(list(texts))
        return self.prompt_encoder(embeddings.float()).to(device=device, dtype=dtype)


def bundled_text_checkpoint() -> Path:
    """Path of the bundled text weights (the bundled model's text prompt encoder and mask decoder)."""
    return bundled_weights_file(BUNDLED_TEXT_WEIGHTS, "bundled text weights")


def load_text_model(
    checkpoint: Optional[Union[str, Path]] = None,
    concept_encoder: Any = None,
    model_type: Optional[str] = None,
    device: Optional[Union[str, torch.device]] = None,
    dtype: Optional[torch.dtype] = None,
) -> tuple["Sam", TextPrompting]:
    """A SAM model and the :class:`TextPrompting` trained with it.

    Args:
        checkpoint: a text checkpoint (see :mod:`promptseg.text.checkpoint`): a whole model with
            text weights, or only some modules (applied on the bundled model). None: the bundled
            ``vit_tiny_text.safetensors``.
        concept_encoder: the concept encoder the text weights were trained with; default the
            bundled one (``promptseg.text.load_concept_encoder("bundled")``).
        model_type: the architecture of a whole-model checkpoint (default: read from the file).
    Returns:
        (sam, text) for ``SamPredictor(sam, text=text)``.
    """
    from promptseg.build import build_sam

    path = Path(checkpoint) if checkpoint is not None else bundled_text_checkpoint()
    stored = read_text_checkpoint(path)
    if stored.has_whole_model:
        found = model_type or identify_model_type(stored.sam_state)
        if found is None:
            raise CheckpointError(f"cannot tell the model type of {str(path)!r}; pass model_type=")
        sam = build_sam(found, checkpoint=path, device=device, dtype=dtype)
    else:
        sam = build_bundled_sam(device=device, dtype=dtype)
        _load_modules(sam, stored.sam_state, str(path))
    if concept_encoder is None:
        from promptseg.text import load_concept_encoder

        concept_encoder = load_concept_encoder("bundled")
    text = TextPrompting(concept_encoder, stored.prompt_encoder())
    text.check_model(sam)
    return sam, text.to(device=sam.device)


def _load_modules(sam: "Sam", state: dict[str, torch.Tensor], source: str) -> None:
    """Load each top-level module named in ``state`` strictly from its keys."""
    names = sorted({key.split(".", 1)[0] for key in state})
    modules = dict(sam.named_children())
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise CheckpointError(f"{source} holds weights of modules {unknown} that a SAM model does not have")
    for name in names:
        prefix = name + "."
        part = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        try:
            modules[name].load_state_dict(part, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"{source}: its {name} weights do not fit the model: {error}") from None
