"""A word-level tokenizer over the concept vocabulary (the bundled concept encoder's text input)."""

from __future__ import annotations

import torch

from promptseg.text.vocabulary import COLOURS, FILLS, POSITIONS, SHAPES, SIZES, normalise_word

PAD, UNKNOWN = "<pad>", "<unk>"
FUNCTION_WORDS = ("a", "an", "the", "on", "in", "at", "of", "inside", "with", "and", "object", "shape", "thing")


def default_words() -> tuple[str, ...]:
    """Every token of the bundled tokenizer, in id order (0 is padding, 1 an unknown word)."""
    return (PAD, UNKNOWN, *COLOURS, *SHAPES, *FILLS, *SIZES, *POSITIONS, *FUNCTION_WORDS)


class WordTokenizer:
    """Lower-cased words (synonyms mapped to the vocabulary) to ids; unknown words share one id."""

    def __init__(self, words: tuple[str, ...], context_length: int) -> None:
        if len(set(words)) != len(words) or words[:2] != (PAD, UNKNOWN):
            raise ValueError(f"words must be distinct and start with {PAD!r}, {UNKNOWN!r}")
        self.words, self.context_length = tuple(words), context_length
        self.ids = {word: index for index, word in enumerate(words)}

    def content_words(self) -> tuple[str, ...]:
        """The words that carry meaning: every token but padding, the unknown word and :data:`FUNCTION_WORDS`."""
        return tuple(word for word in self.words[2:] if word not in FUNCTION_WORDS)

    def read(self, text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(known, unknown) words of ``text``: its content words (normalised, in order) and its words
        outside the vocabulary (as written). Function words are neither: they carry nothing."""
        known, unknown = [], []
        for raw in text.split():
            word = normalise_word(raw)
            if word not in self.ids:
                unknown.append(raw)
            elif word not in FUNCTION_WORDS:
                known.append(word)
        return tuple(known), tuple(unknown)

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """(N, context_length) int64 ids (0-padded) and, per text, whether it was cut to the context."""
        tokens = torch.zeros(len(texts), self.context_length, dtype=torch.int64)
        truncated = []
        for row, text in enumerate(texts):
            ids = [self.ids.get(normalise_word(word), 1) for word in text.split()]
            ids = [i for i in ids if i != 1 or len(ids) == 1] or [1]  # unknown words carry nothing, unless alone
            truncated.append(len(ids) > self.context_length)
            ids = ids[: self.context_length]
            tokens[row, : len(ids)] = torch.tensor(ids)
        return tokens, truncated
