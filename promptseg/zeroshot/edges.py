"""Zero-shot edge detection with SAM, the paper's recipe (its section 7.2 and appendix D.2):

1. prompt a regular grid of foreground points (16 x 16 by default), 3 masks each: 768 masks;
2. remove redundant masks by box NMS (the mask generator's NMS, ranked by predicted IoU);
3. Sobel-filter each surviving mask's *unthresholded* probability map (sigmoid of the logits at
   full image size);
4. combine them by a per-pixel maximum into one edge map, and thin it by edge NMS.

Points are decoded through the predictor's :class:`promptseg.decoders.Decoder` with
:func:`promptseg.amg.decoding.decode_points`, as the mask generator decodes its grid.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.amg.decoding import decode_points, measure_masks
from promptseg.amg.grids import build_point_grid
from promptseg.amg.nms import nms_keep
from promptseg.decoders import Decoder
from promptseg.modeling import Sam
from promptseg.predictor import SamPredictor
from promptseg.prompts.validate import check_image
from promptseg.zeroshot.edge_maps import edge_nms, sobel_magnitude


class EdgeDetector:
    """Edge maps from SAM's masks for a grid of point prompts."""

    def __init__(
        self,
        model: Sam,
        points_per_side: int = 16,
        points_per_batch: int = 64,
        nms_thresh: float = 0.7,
        pred_iou_thresh: float = 0.0,
        stability_score_thresh: float = 0.0,
        stability_score_offset: float = 1.0,
        thin: bool = True,
        decoder: Optional[Decoder] = None,
    ) -> None:
        """
        Args:
            model: the SAM to prompt, on the device and in the dtype to run with.
            points_per_side: the grid has points_per_side**2 points (16: the paper's 768 masks).
            points_per_batch: points decoded together (each batch holds 3 * points_per_batch full-size maps).
            nms_thresh: box IoU above which NMS drops a duplicate mask (1.0 keeps all).
            pred_iou_thresh, stability_score_thresh: optional quality filters (0, the paper's recipe: none).
            stability_score_offset: the logit offset of the stability score.
            thin: apply edge NMS (off gives the raw combined Sobel map).
            decoder: what decodes the points; default as ``SamPredictor``.
        """
        for name, value in (("points_per_side", points_per_side), ("points_per_batch", points_per_batch)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0.0 <= nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must be in [0, 1], got {nms_thresh!r}")
        self.predictor = SamPredictor(model, decoder=decoder)
        self.points = build_point_grid(points_per_side)
        self.points_per_batch = points_per_batch
        self.nms_thresh = nms_thresh
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
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
        model_points = torch.as_tensor(
            predictor.transform.apply_coords(self.points * np.array([width, height]), original_size),
            device=predictor.device,
        )
        low_res, scores, boxes, stability = [], [], [], []
        for first in range(0, len(model_points), self.points_per_batch):
            logits, iou = decode_points(decoder, predictor.features, slot, model_points[first : first + self.points_per_batch])
            batch_boxes, batch_stability = measure_masks(
                decoder, logits, input_size, original_size, model.image_encoder.img_size, model.mask_threshold,
                self.stability_score_offset,
            )
            low_res.append(logits.flatten(0, 1))
            scores.append(iou.flatten(0, 1).float())
            boxes.append(batch_boxes)
            stability.append(batch_stability)
        low_res_all, score, box, stable = (torch.cat(parts) for parts in (low_res, scores, boxes, stability))
        keep = (score > self.pred_iou_thresh) | (self.pred_iou_thresh <= 0)
        keep &= (stable >= self.stability_score_thresh) | (self.stability_score_thresh <= 0)
        index = keep.nonzero().squeeze(1)
        index = index[nms_keep(box[index], score[index], self.nms_thresh)]
        combined = torch.zeros(original_size, dtype=torch.float32, device=predictor.device)
        batch = 3 * self.points_per_batch
        for first in range(0, len(index), batch):
            chunk = low_res_all[index[first : first + batch]]
            logits = decoder.postprocess(
                chunk[:, None], input_size, original_size, model.image_encoder.img_size, model.mask_threshold, True
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
