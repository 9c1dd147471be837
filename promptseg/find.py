"""``find_instances``: every instance of a described concept, zero-shot.

The automatic mask generator proposes masks; a concept encoder scores a crop around each
proposal's box against the text; the proposals that match are kept, best first, after mask NMS
and after dropping those lying mostly inside an already-kept one (a stripe of a striped object, a
fragment of a kept whole). A proposal matches when it scores at least ``threshold``; by default,
for an encoder with a fixed vocabulary, its ``default_threshold``, and for an open-vocabulary one
(open_clip) the calibrated rule of :mod:`promptseg.text.matching` (its score stands out from
phrases that name nothing). A query with no word the encoder knows is refused, and unknown words
are named in a warning (:mod:`promptseg.text.understanding`).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch

from promptseg.automatic import MaskRecord, SamAutomaticMaskGenerator
from promptseg.modeling import Sam
from promptseg.predictor import SamPredictor
from promptseg.sam2.modeling.sam2_base import SAM2Base
from promptseg.prompts.validate import check_image
from promptseg.settings import preset
from promptseg.text.crops import box_crop
from promptseg.text.encoder import ConceptEncoder, check_text
from promptseg.text.matching import DEFAULT_MATCH_Z, match_z_scores, null_text_scores
from promptseg.text.understanding import understood_text

# Proposal settings for the bundled vit_tiny SAM: its "find" preset (promptseg.settings).
BUNDLED_PROPOSALS = preset("bundled", "find").generator_kwargs()


def proposal_generator(sam: Union[Sam, SamPredictor, SamAutomaticMaskGenerator, None] = None, **settings: Any) -> SamAutomaticMaskGenerator:
    """A mask generator for proposals: ``sam`` itself when it is one, else one over ``sam``'s model
    (the bundled SAM when None) with ``settings`` (default :data:`BUNDLED_PROPOSALS` for the bundled model)."""
    if isinstance(sam, SamAutomaticMaskGenerator):
        if settings:
            raise ValueError(f"settings {sorted(settings)} apply to a new generator; the given one has its own")
        if sam.output_mode != "binary_mask":
            raise ValueError(f"find_instances needs a generator with output_mode='binary_mask', got {sam.output_mode!r}")
        return sam
    if sam is None:
        from promptseg.bundled import build_bundled_sam

        sam, settings = build_bundled_sam(), {**BUNDLED_PROPOSALS, **settings}
    elif isinstance(sam, SamPredictor):
        sam = sam.model
    elif not isinstance(sam, (Sam, SAM2Base)):
        raise TypeError(
            f"sam must be a Sam (or a SAM 2 model), SamPredictor, SamAutomaticMaskGenerator or None, got {type(sam).__name__}"
        )
    return SamAutomaticMaskGenerator(sam, **settings)


@torch.no_grad()
def find_instances(
    image: np.ndarray,
    query: str,
    *,
    sam: Union[Sam, SamPredictor, SamAutomaticMaskGenerator, None] = None,
    concept_encoder: Optional[ConceptEncoder] = None,
    threshold: Optional[float] = None,
    nms_thresh: float = 0.5,
    containment_thresh: float = 0.8,
    crop_expand: float = 1.2,
    proposals: Optional[list[MaskRecord]] = None,
    match_z: float = DEFAULT_MATCH_Z,
) -> list[MaskRecord]:
    """Masks of every instance of ``query`` in ``image``.

    Args:
        image: (H, W, 3) uint8 RGB (not modified).
        query: one phrase, e.g. "red star".
        sam: what proposes masks: a mask generator (used as it is; binary_mask output), or a model /
            predictor (a generator with default settings is built), or None for the bundled SAM with
            :data:`BUNDLED_PROPOSALS`. Building a generator per call costs little; pass one to reuse it.
        concept_encoder: scores crops against the text (default: the bundled one).
        threshold: keep proposals whose cosine similarity with the text is at least this. None
            (default): an encoder with a fixed vocabulary keeps those at its ``default_threshold``;
            an open-vocabulary encoder (open_clip) those whose similarity stands ``match_z``
            standard deviations above phrases that name nothing (:mod:`promptseg.text.matching`).
        nms_thresh: mask IoU above which the lower-scored of two kept proposals is dropped.
        containment_thresh: drop a proposal when this fraction of its area lies in a better kept one.
        crop_expand: crop side over the proposal box's longer side.
        proposals: precomputed generator records for ``image`` (skips the generator).
        match_z: the calibrated rule's cut-off (open-vocabulary encoders, ``threshold`` None).

    Returns:
        The generator's records (``segmentation`` (H, W) bool, ``area``, ``bbox`` XYWH,
        ``predicted_iou``, ``point_coords``, ``stability_score``, ``crop_box``) of the kept
        proposals, each with ``score`` (the concept similarity), best score first; empty when
        nothing matches.
    Raises:
        UnknownTextError: no word of ``query`` is one the concept encoder knows (a ValueError).
    Warns:
        UnknownWordsWarning: naming the words of ``query`` outside the encoder's vocabulary.
    """
    query = check_text(query, "query")
    image = check_image(image, "RGB")
    if concept_encoder is None:
        from promptseg.text.loading import load_concept_encoder

        concept_encoder = load_concept_encoder("bundled")
    if not isinstance(concept_encoder, ConceptEncoder):
        raise TypeError(f"concept_encoder must be a ConceptEncoder, got {type(concept_encoder).__name__}")
    for name, value in (("nms_thresh", nms_thresh), ("containment_thresh", containment_thresh)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    understood_text(concept_encoder, query, "query")
    if proposals is None:
        proposals = proposal_generator(sam).generate(image)
    if not proposals:
        return []
    crops = embed_proposals(image, proposals, concept_encoder, crop_expand)
    scores = (crops @ concept_encoder.encode_text([query]).T)[:, 0]
    if threshold is not None:
        matches = scores >= threshold
    elif concept_encoder.open_vocabulary:
        matches = match_z_scores(scores, null_text_scores(concept_encoder, crops)) >= match_z
    else:
        matches = scores >= float(getattr(concept_encoder, "default_threshold", 0.25))
    scores, matches = scores.cpu().numpy(), matches.cpu().numpy()
    order = [i for i in np.argsort(-scores, kind="stable") if matches[i]]
    kept: list[int] = []
    for index in order:
        mask = proposals[index]["segmentation"]
        area = max(int(mask.sum()), 1)
        if any(_overlaps(mask, area, proposals[k]["segmentation"], nms_thresh, containment_thresh) for k in kept):
            continue
        kept.append(index)
    return [{**proposals[i], "score": float(scores[i])} for i in kept]


def score_proposals(
    image: np.ndarray, query: str, proposals: list[MaskRecord], concept_encoder: ConceptEncoder, crop_expand: float = 1.2
) -> np.ndarray:
    """(N,) float32 cosine similarity of ``query`` with a crop around each proposal's box."""
    crops = embed_proposals(image, proposals, concept_encoder, crop_expand)
    return (crops @ concept_encoder.encode_text([query]).T)[:, 0].cpu().numpy()


def embed_proposals(
    image: np.ndarray, proposals: list[MaskRecord], concept_encoder: ConceptEncoder, crop_expand: float = 1.2
) -> torch.Tensor:
    """(N, D) float32 L2-normalised concept embeddings of a crop around each proposal's box."""
    crops = [box_crop(image, _xyxy(record["bbox"]), crop_expand) for record in proposals]
    return torch.cat([concept_encoder.encode_images(crops[i : i + 256]) for i in range(0, len(crops), 256)])


def _xyxy(bbox: list[float]) -> tuple[float, float, float, float]:
    x, y, w, h = bbox
    return x, y, x + max(w, 1), y + max(h, 1)


def _overlaps(mask: np.ndarray, area: int, other: np.ndarray, nms_thresh: float, containment_thresh: float) -> bool:
    inter = int(np.logical_and(mask, other).sum())
    if inter == 0:
        return False
    union = area + int(other.sum()) - inter
    return inter / union > nms_thresh or inter / area > containment_thresh
