"""Zero-shot edge detection with SAM, the paper's recipe (its section 7.2 and appendix D.2):

1. prompt a regular grid of foreground points (16 x 16 by default), 3 masks each: 768 masks;
2. remove redundant masks by box NMS (the mask generator's NMS, ranked by predicted IoU);
3. Sobel-filter each surviving mask's *unthresholded* probability map (sigmoid of the logits at
   full image size);
4. combine them by a per-pixel maximum into one edge map, and thin it by edge NMS.

Steps 1 and 2 are the mask generator's grid step (:func:`promptseg.automatic.grid_candidates`) on
the whole image, with the settings :data:`EDGE_SETTINGS`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.amg.candidates import Crop
from promptseg.amg.grids import build_point_grid
from promptseg.automatic import grid_candidates
from promptseg.decoders import Decoder
from promptseg.modeling import Sam
from promptseg.predictor import SamPredictor
from promptseg.prompts.validate import check_image
from promptseg.settings import OFFICIAL, GeneratorSettings
from promptseg.zeroshot.edge_maps import edge_nms, sobel_magnitude

EDGE_SETTINGS = OFFICIAL.replace(points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0)
"""The paper's recipe: a 16 x 16 grid (768 masks), no quality filter, box NMS at 0.7."""


class EdgeDetector:
    """Edge maps from SAM's masks for a grid of point prompts."""

    def __init__(
        self,
        model: Sam,
        settings: Optional[GeneratorSettings] = None,
        *,
        nms_thresh: Optional[float] = None,
        thin: bool = True,
        decoder: Optional[Decoder] = None,
        **overrides: Any,
    ) -> None:
        """
        Args:
            model: the SAM to prompt, on the device and in the dtype to run with.
            settings: the grid step's settings (default :data:`EDGE_SETTINGS`); of them, points_per_side
                (the grid has points_per_side**2 points), points_per_batch, pred_iou_thresh,
                stability_score_thresh (0: no quality filter, the paper's recipe), stability_score_offset
                and box_nms_thresh apply.
            nms_thresh: box IoU above which NMS drops a duplicate mask (1.0 keeps all); the
                paper's name of ``box_nms_thresh``.
            thin: apply edge NMS (off gives the raw combined Sobel map).
            decoder: what decodes the points; default as ``SamPredictor``.
            overrides: generator settings to change (setting name -> value), e.g. ``points_per_side=8``.
        """
        if settings is not None and not isinstance(settings, GeneratorSettings):
            raise TypeError(f"settings must be a GeneratorSettings or None, got {type(settings).__name__}")
        self.settings = (EDGE_SETTINGS if settings is None else settings).replace(box_nms_thresh=nms_thresh, **overrides)
        if self.settings.points_per_side is None:
            raise ValueError("the edge detector prompts a grid of points_per_side**2 points; point_grids is not supported")
        self.predictor = SamPredictor(model, decoder=decoder)
        self.points = build_point_grid(self.settings.points_per_side)
        self.thin = thin

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W) float32 edge map in [0, 1] of an (H, W, 3) uint8 RGB image."""
        check_image(image, "RGB")
        return self.detect_batch([image])[0]

    @torch.no_grad()
    def detect_batch(self, images: Sequence[np.ndarray], batch_size: int = 4, progress: bool = False) -> list[np.ndarray]:
        """Edge maps of several images, their embeddings computed ``batch_size`` at a time.

        Returns:
            One (H, W) float32 edge map in [0, 1] per image.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise TypeError("detect_batch expects a sequence of (H, W, 3) images; call the detector on one image")
        for index, image in enumerate(images):
            try:
                check_image(image, "RGB")
            except (TypeError, ValueError) as error:
                raise type(error)(f"images[{index}]: {error}") from None
        results = []
        with tqdm(total=len(images), desc="edges", unit="image", disable=not progress) as bar:
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                self.predictor.set_images(list(chunk), batch_size=len(chunk))
                for slot in range(len(chunk)):
                    results.append(self._edges_of(slot).cpu().numpy())
                    bar.update()
        self.predictor.reset_image()
        return results

    def probability_edges(self, slot: int) -> torch.Tensor:
        """(H, W) float32 per-pixel maximum of the Sobel magnitudes of the kept masks' probability maps,
        for image ``slot`` of the predictor's current images (before thinning)."""
        predictor = self.predictor
        model, decoder = predictor.model, predictor.decoder
        original_size, input_size = predictor.original_sizes[slot], predictor.input_sizes[slot]
        height, width = original_size
        whole = Crop((0, 0, width, height), 0, (input_size[0], input_size[1]), self.points * np.array([width, height]))
        low_res_all = grid_candidates(predictor, slot, whole, self.settings).low_res_logits
        combined = torch.zeros(original_size, dtype=torch.float32, device=predictor.device)
        batch = 3 * self.settings.points_per_batch
        for first in range(0, len(low_res_all), batch):
            chunk = low_res_all[first : first + batch]
            logits = decoder.postprocess(
                chunk[:, None], input_size, original_size, predictor.encoder.img_size, model.mask_threshold, True
            )[:, 0]
            magnitude = sobel_magnitude(torch.sigmoid(logits.float()))
            combined = torch.maximum(combined, magnitude.amax(0))
        return combined

    def _edges_of(self, slot: int) -> torch.Tensor:
        combined = self.probability_edges(slot)
        thinned = edge_nms(combined) if self.thin else combined
        return thinned.clamp(0.0, 1.0)


def edges(image: np.ndarray, model: Optional[Sam] = None, **options) -> np.ndarray:
    """(H, W) float32 edge map in [0, 1] of an (H, W, 3) uint8 RGB image.

    Args:
        model: the SAM to use; default the bundled model on the CPU.
        options: :class:`EdgeDetector` arguments.
    """
    if model is None:
        from promptseg.bundled import build_bundled_sam

        model = build_bundled_sam()
    return EdgeDetector(model, **options)(image)
