"""The prompt encoder of SAM 2, under the official ``sam2.modeling.sam.prompt_encoder`` path.

SAM 2's prompt encoder is SAM's, module for module and weight for weight, so this is
:class:`promptseg.modeling.PromptEncoder` (points, box corners and masks to sparse and dense
embeddings; see :mod:`promptseg.prompts.tokens` for the token labels).
"""

from promptseg.modeling import PromptEncoder

__all__ = ["PromptEncoder"]
