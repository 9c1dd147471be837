""""No match" for an open-vocabulary concept encoder, from the statistics of its own scores.

An open-vocabulary encoder (open_clip) embeds any text, so no word can be refused as unknown,
and its cosine similarities sit on a scale of their own: a fixed cut-off (e.g. 0.25) means
something for one model and nothing for another (for random weights every similarity is near 0).
So a crop matches a phrase when the phrase scores clearly above phrases that name nothing,
:data:`NULL_TEXTS`, on that same crop:

    z_i = (s(crop_i, phrase) - mean_j s(crop_i, null_j)) / spread

where ``spread`` is the standard deviation of ``s(crop_i, null_j) - mean_j s(crop_i, null_j)``
over all crops i and null texts j of the call: how far a phrase that names nothing strays from
the null mean on these crops, with this encoder. A crop matches when ``z_i >= match_z``. The
default :data:`DEFAULT_MATCH_Z` = 3 is the one-sided 0.13% point of a normal distribution: were
the null similarities normal, a phrase that names nothing would pass on about 1 crop in 740.

How it was calibrated, and what is not known: the rule has no constant on the similarity scale,
so it needs no labelled data and holds for any encoder's scale; the value of ``match_z`` comes
from the null statistic alone. A phrase that names nothing scores alike on every crop of an image
(its own offset), so its false matches come per phrase rather than per crop. Measured on
random-weight open_clip ViT-S-32, where every match is false (20 synthetic scenes, 11 phrases
each, CPU): 4 of 1177 crops (0.34%) and 3 of 220 phrase-image pairs passed z >= 3. No real CLIP
weights were available to this project, so how many true matches a real model loses at z >= 3 is
not measured. Pass ``match_z`` (``find_instances``, ``promptseg find --match-z``), or an absolute
``threshold`` instead, to change it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from promptseg.text.crops import object_crop

NULL_TEXTS: tuple[str, ...] = (
    "qwerty", "zxcvbnm", "asdf ghjkl", "xyzzy plugh", "lorem ipsum dolor sit", "blorft", "mnbv cxz lkj",
    "uiop", "fnord wibble", "zzz", "qqq ppp rrr", "hjkl yuio vbnm wert",
    "something", "a thing", "an object", "stuff", "it", "whatever this is", "some item", "a piece of something",
    "the", "a", "an image", "this and that",
)
"""Phrases that name nothing in particular: gibberish and the vaguest words, of one to four words
(an encoder's similarity moves with a phrase's length too, and the spread must include that)."""
DEFAULT_MATCH_Z = 3.0
"""Standard deviations of the null spread a phrase must score above the null mean (see the module)."""
MIN_SPREAD = 1e-6
"""Floor of the null spread, so that identical null scores do not divide by zero."""


def match_z_scores(
    phrase_scores: torch.Tensor, null_scores: torch.Tensor, min_spread: float = MIN_SPREAD
) -> torch.Tensor:
    """(N,) z-scores of a phrase on N crops against J null texts.

    Args:
        phrase_scores: (N,) cosine similarity of each crop with the phrase.
        null_scores: (N, J) cosine similarity of each crop with each null text, J >= 2.
        min_spread: floor of the spread.
    Returns:
        (N,) float32 ``(phrase - null mean per crop) / spread``, the spread pooled over every crop
        and null text (see the module).
    """
    if phrase_scores.dim() != 1 or null_scores.dim() != 2 or null_scores.shape[0] != phrase_scores.shape[0]:
        raise ValueError(
            f"expected (N,) phrase scores and (N, J) null scores, got {tuple(phrase_scores.shape)} "
            f"and {tuple(null_scores.shape)}"
        )
    if null_scores.shape[1] < 2:
        raise ValueError(f"need at least 2 null texts for a spread, got {null_scores.shape[1]}")
    null_scores = null_scores.float()
    mean = null_scores.mean(dim=1)
    deviations = null_scores - mean[:, None]
    spread = deviations.pow(2).sum().div(deviations.numel() - deviations.shape[0]).sqrt().clamp_min(min_spread)
    return (phrase_scores.float() - mean) / spread


def null_text_scores(encoder: object, crop_embeddings: torch.Tensor, null_texts: Sequence[str] = NULL_TEXTS) -> torch.Tensor:
    """(N, J) cosine similarity of N embedded crops ((N, D), L2-normalised) with the J ``null_texts``."""
    texts = encoder.encode_text(list(null_texts))
    return crop_embeddings @ texts.to(crop_embeddings.device, crop_embeddings.dtype).T


def masks_match(
    encoder: object,
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    phrase: str,
    match_z: float = DEFAULT_MATCH_Z,
    null_texts: Sequence[str] = NULL_TEXTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Whether each mask's object matches ``phrase`` under the calibrated rule (a crop around its box).

    Args:
        encoder: a concept encoder (``encode_text``, ``encode_images``).
        image: (H, W, 3) uint8 RGB.
        masks: N (H, W) bool masks; an empty one never matches.
        phrase: the text.
        match_z: the rule's cut-off.
    Returns:
        (N,) bool matches and (N,) float32 z-scores (-inf for an empty mask).
    """
    present = [index for index, mask in enumerate(masks) if mask.any()]
    z = np.full(len(masks), -np.inf, dtype=np.float32)
    if present:
        crops = encoder.encode_images([object_crop(image, masks[index]) for index in present])
        scores = (crops @ encoder.encode_text([phrase]).T)[:, 0]
        z[present] = match_z_scores(scores, null_text_scores(encoder, crops, null_texts)).cpu().numpy()
    return z >= match_z, z
