"""Zero-shot object proposals: the automatic mask generator's masks, ranked, as class-agnostic proposals
(the paper's section 7.3).

The paper runs "a slightly modified version" of its automatic mask generation pipeline and outputs
the masks as proposals. The changes made here:

- the quality filters are loosened (the ``proposals`` purpose of :func:`promptseg.settings.preset_for`:
  ``pred_iou_thresh`` 0.88 -> 0.5, ``stability_score_thresh`` 0.95 -> 0.7 for SAM), so that enough
  masks survive to fill a budget of up to 1000 proposals;
- duplicates are removed by box NMS as in the generator (``box_nms_thresh`` 0.7), so that near
  copies do not crowd the budget;
- no small-region clean-up (small proposals count in AR);
- masks are ranked by a score (``score``: predicted IoU, the default; stability; or their product)
  and the best ``k`` kept.

Every other setting is the mask generator's (grid of ``points_per_side``, crops off by default).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from promptseg.automatic import SamAutomaticMaskGenerator
from promptseg.decoders import Decoder
from promptseg.modeling import Sam
from promptseg.settings import GeneratorSettings, preset, preset_for

PROPOSAL_SETTINGS = preset("official", "proposals")
"""The paper's proposal settings for SAM (the default of :class:`ProposalGenerator`)."""
SCORES = ("predicted_iou", "stability_score", "product")
Proposal = dict[str, Any]


class ProposalGenerator:
    """Ranked class-agnostic mask proposals from SAM's automatic mask generation."""

    def __init__(
        self,
        model: Sam,
        settings: Optional[GeneratorSettings] = None,
        *,
        score: str = "predicted_iou",
        decoder: Optional[Decoder] = None,
        **overrides: Any,
    ) -> None:
        """
        Args:
            model: the SAM to prompt.
            settings: the generator settings (default :data:`PROPOSAL_SETTINGS`; for another model,
                ``promptseg.settings.preset_for(model_type, purpose="proposals")``); ``output_mode``
                is always ``coco_rle``.
            score: what ranks the proposals, one of :data:`SCORES`.
            decoder: what decodes the points; default as ``SamPredictor``.
            overrides: generator settings to change (setting name -> value), e.g. ``points_per_side=16``.
        """
        if score not in SCORES:
            raise ValueError(f"score must be one of {list(SCORES)}, got {score!r}")
        self.score = score
        settings = PROPOSAL_SETTINGS if settings is None else settings
        self.generator = SamAutomaticMaskGenerator.from_settings(
            model, settings, decoder=decoder, **overrides, output_mode="coco_rle"
        )

    def __call__(self, image: np.ndarray, k: int = 1000) -> list[Proposal]:
        """The best ``k`` proposals of an (H, W, 3) uint8 RGB image (see :meth:`propose_batch`)."""
        _check_k(k)
        records = self.generator.generate(image)
        return self._ranked(records, k)

    def propose_batch(
        self, images: Sequence[np.ndarray], k: int = 1000, batch_size: int = 4, progress: bool = False
    ) -> list[list[Proposal]]:
        """Proposals of several images, encoded ``batch_size`` at a time.

        Returns:
            Per image, at most ``k`` proposals, best first, each a dict with ``segmentation`` (COCO
            compressed RLE), ``bbox`` (XYWH), ``area``, ``score`` (by ``score``), ``predicted_iou`` and
            ``stability_score``.
        """
        _check_k(k)
        per_image = self.generator.generate_batch(images, batch_size=batch_size, progress=progress)
        return [self._ranked(records, k) for records in per_image]

    def _ranked(self, records: list[dict[str, Any]], k: int) -> list[Proposal]:
        proposals = []
        for record in records:
            iou, stability = record["predicted_iou"], record["stability_score"]
            value = {"predicted_iou": iou, "stability_score": stability, "product": iou * stability}[self.score]
            proposals.append(
                {
                    "segmentation": record["segmentation"],
                    "bbox": record["bbox"],
                    "area": record["area"],
                    "score": float(value),
                    "predicted_iou": float(iou),
                    "stability_score": float(stability),
                }
            )
        proposals.sort(key=lambda proposal: -proposal["score"])
        return proposals[:k]


def _check_k(k: Any) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")


def proposals(image: np.ndarray, k: int = 1000, model: Optional[Sam] = None, **options: Any) -> list[Proposal]:
    """The best ``k`` class-agnostic mask proposals of an (H, W, 3) uint8 RGB image.

    Args:
        model: the SAM to use; default the bundled model on the CPU (with the bundled preset's settings).
        options: :class:`ProposalGenerator` arguments.
    """
    if model is None:
        from promptseg.bundled import build_bundled_sam

        model = build_bundled_sam()
        options.setdefault("settings", preset_for(None, purpose="proposals"))
    return ProposalGenerator(model, **options)(image, k=k)
