"""Prompts before they reach a decoder: validation, the image frame, the one token rule, batching.

* :mod:`~promptseg.prompts.validate`: checks of user input (images, prompts) with clear errors;
* :mod:`~promptseg.prompts.frames`: ``ResizeLongestSide``, the frame the encoder sees;
* :mod:`~promptseg.prompts.tokens`: the one token rule, in torch and numpy;
* :mod:`~promptseg.prompts.batch`: packing prompts of different shapes into a ``PromptBatch``.
"""

from promptseg.prompts.batch import PromptBatch, pack_prompts, tensor_prompt_batch
from promptseg.prompts.frames import ResizeLongestSide
from promptseg.prompts.tokens import prompt_tokens, token_sequence
from promptseg.prompts.validate import Prompt

__all__ = [
    "Prompt",
    "PromptBatch",
    "ResizeLongestSide",
    "pack_prompts",
    "prompt_tokens",
    "tensor_prompt_batch",
    "token_sequence",
]
