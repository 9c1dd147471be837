"""``SAM2AutomaticMaskGenerator`` under the official ``sam2.automatic_mask_generator`` path: masks for
everything in an image, prompted by a grid of points, with the official arguments and records.

It runs on promptseg's device-resident generator (:func:`promptseg.automatic.generate_records`,
SAM's ``SamAutomaticMaskGenerator`` pipeline): each crop is embedded (crops batched), its grid
points are decoded ``points_per_batch`` at a time through the predictor's decoder, scored,
boxed and filtered on the device, NMS removes duplicates within each crop and between crops, and
only the survivors' full-size masks are rebuilt and run-length encoded. The steps are SAM 2's:
``min_mask_region_area`` removes small holes and sprinkles of the low-res logits (the predictor's
``max_hole_area`` / ``max_sprinkle_area``), ``use_m2m`` refines each candidate once with its own
low-res logits as mask input, ``multimask_output=False`` takes the single (dynamic) mask,
``mask_threshold`` cuts the masks, and the records (keys, float boxes, order) are the official
ones. :meth:`postprocess_small_regions` is there to call, as officially.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from promptseg.amg.batching import batch_iterator
from promptseg.amg.crops import uncrop_boxes_xyxy, uncrop_masks, uncrop_points
from promptseg.amg.filters import near_crop_edge
from promptseg.amg.grids import build_all_layer_point_grids, generate_crop_boxes
from promptseg.amg.mask_data import postprocess_small_regions as _postprocess_small_regions
from promptseg.amg.nms import crop_nms_keep, nms_keep
from promptseg.amg.rle import uncompressed_rles
from promptseg.masks import mask_boxes_xyxy, stability_score
from promptseg.automatic import GridDecoding, MaskRecord, generate_records
from promptseg.decoders import Decoder
from promptseg.prompts.validate import check_image
from promptseg.sam2.modeling.sam2_base import SAM2Base
from promptseg.sam2.sam2_image_predictor import SAM2ImagePredictor
from promptseg.sam2.utils.amg import MaskData
from promptseg.settings import OUTPUT_MODES, GeneratorSettings

__all__ = ["OUTPUT_MODES", "SAM2AutomaticMaskGenerator"]


class SAM2AutomaticMaskGenerator:
    """Generate masks for a whole image from a grid of point prompts, then filter and deduplicate them."""

    def __init__(
        self,
        model: SAM2Base,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[list[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        *,
        decoder: Optional[Decoder] = None,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            model: the SAM 2 model.
            points_per_side: the grid has points_per_side**2 points per crop layer 0 (None when
                ``point_grids`` is given).
            points_per_batch: points decoded together.
            pred_iou_thresh: keep masks whose predicted IoU is above this (0 keeps all).
            stability_score_thresh: keep masks whose stability score is at least this (0 keeps all).
            stability_score_offset: the logit offset of the stability score.
            mask_threshold: logit threshold of the masks.
            box_nms_thresh: box IoU above which NMS drops the lower-scored mask of a crop.
            crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor:
                the crop layers (layer i has (2**i)**2 crops), their NMS, overlap and grid scaling.
            point_grids: explicit [0, 1]^2 grids, one per crop layer.
            min_mask_region_area: holes and sprinkles of at most this many low-res pixels are
                removed before masks are resized (the predictor's max_hole_area / max_sprinkle_area).
            output_mode: "binary_mask", "uncompressed_rle" or "coco_rle".
            use_m2m: refine each candidate once with its own low-res logits as mask input.
            multimask_output: three masks per grid point (else one).
            decoder: what decodes the points (a promptseg addition); default as ``SAM2ImagePredictor``.
            **kwargs: accepted and ignored, as officially.
        """
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("exactly one of points_per_side and point_grids must be given")
        self.point_grids = (
            build_all_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
            if points_per_side is not None
            else point_grids
        )
        self.predictor = SAM2ImagePredictor(
            model, max_hole_area=min_mask_region_area, max_sprinkle_area=min_mask_region_area, decoder=decoder
        )
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output
        self.last_filter_counts: list = []
        """Per image of the last :meth:`generate`, how many candidates each filter removed (a promptseg
        addition, :class:`promptseg.amg.filters.FilterCounts`)."""
        self.settings  # checks the settings now

    @property
    def settings(self) -> GeneratorSettings:
        """The generator's settings as promptseg's :class:`~promptseg.settings.GeneratorSettings`
        (checked; a promptseg addition)."""
        return GeneratorSettings(
            points_per_side=self.points_per_side,
            points_per_batch=self.points_per_batch,
            pred_iou_thresh=self.pred_iou_thresh,
            stability_score_thresh=self.stability_score_thresh,
            stability_score_offset=self.stability_score_offset,
            box_nms_thresh=self.box_nms_thresh,
            crop_n_layers=self.crop_n_layers,
            crop_nms_thresh=self.crop_nms_thresh,
            crop_overlap_ratio=self.crop_overlap_ratio,
            crop_n_points_downscale_factor=self.crop_n_points_downscale_factor,
            point_grids=None if self.points_per_side is not None else self.point_grids,
            min_mask_region_area=self.min_mask_region_area,
            output_mode=self.output_mode,
        )

    @property
    def decoding(self) -> GridDecoding:
        """SAM 2's decoding options (a promptseg addition, :class:`promptseg.automatic.GridDecoding`)."""
        return GridDecoding(self.multimask_output, self.use_m2m, self.mask_threshold)

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> "SAM2AutomaticMaskGenerator":
        """A generator of an official model from the Hugging Face Hub (see :func:`build_sam2_hf`)."""
        from promptseg.sam2.build_sam import build_sam2_hf

        return cls(build_sam2_hf(model_id, **kwargs), **kwargs)

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[MaskRecord]:
        """Masks of an (H, W, 3) uint8 RGB image, as the official records.

        Each record has ``segmentation`` (an (H, W) bool array, or an RLE dict per
        ``output_mode``), ``area`` (int), ``bbox`` (XYWH floats), ``predicted_iou``,
        ``point_coords`` ([[x, y]]), ``stability_score`` and ``crop_box`` (XYWH floats).
        """
        image = check_image(image, "RGB")
        grids = [np.asarray(grid, dtype=np.float64) for grid in self.point_grids]
        results, self.last_filter_counts = generate_records(
            self.predictor.engine, self.settings, grids, [image], batch_size=1, decoding=self.decoding
        )
        return results[0]

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """Fill small holes and clear small islands of the masks in ``mask_data["rles"]``, then NMS
        again (changed masks score 0, unchanged 1); ``mask_data`` is filtered in place and returned."""
        return _postprocess_small_regions(mask_data, min_area, nms_thresh)

    # ------------------------------------------------------------------------------------------------
    # The official generator's steps, for code that calls them: the same algorithm on the host, one
    # crop and one batch at a time (MaskData columns); generate() runs the device-resident pipeline.
    def _generate_masks(self, image: np.ndarray) -> MaskData:
        """Candidates of every crop, deduplicated between crops; columns as float32 numpy arrays."""
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        data = MaskData()
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs):
            data.cat(self._process_crop(image, crop_box, layer_idx, orig_size))
        if len(crop_boxes) > 1:
            crops = data["crop_boxes"]
            crop_areas = (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1])
            data.filter(crop_nms_keep(data["boxes"], crop_areas.to(data["boxes"].device), self.crop_nms_thresh))
        data.to_numpy()
        return data

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], crop_layer_idx: int, orig_size: tuple[int, ...]
    ) -> MaskData:
        """The candidates of one crop, after NMS within it, in the image's frame."""
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        cropped_size = cropped.shape[:2]
        self.predictor.set_image(cropped)
        points_for_image = self.point_grids[crop_layer_idx] * np.array(cropped_size)[None, ::-1]
        data = MaskData()
        for (points,) in batch_iterator(self.points_per_batch, points_for_image):
            data.cat(self._process_batch(points, cropped_size, crop_box, orig_size, normalize=True))
        self.predictor.reset_predictor()
        data.filter(nms_keep(data["boxes"], data["iou_preds"], self.box_nms_thresh))
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor([crop_box for _ in range(len(data["rles"]))])
        return data

    def _process_batch(
        self,
        points: np.ndarray,
        im_size: tuple[int, ...],
        crop_box: list[int],
        orig_size: tuple[int, ...],
        normalize: bool = False,
    ) -> MaskData:
        """Decode a batch of (P, 2) crop-pixel points; filter, binarise, box and encode their masks."""
        orig_h, orig_w = orig_size
        points = torch.as_tensor(points, dtype=torch.float32, device=self.predictor.device)
        transforms = self.predictor._transforms
        in_points = transforms.transform_coords(points, normalize=normalize, orig_hw=im_size)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        masks, iou_preds, low_res_masks = self.predictor._predict(
            in_points[:, None, :], in_labels[:, None], multimask_output=self.multimask_output, return_logits=True
        )
        data = MaskData(
            masks=masks.flatten(0, 1),
            iou_preds=iou_preds.flatten(0, 1),
            points=points.repeat_interleave(masks.shape[1], dim=0),
            low_res_masks=low_res_masks.flatten(0, 1),
        )
        del masks
        if self.use_m2m:
            in_points = transforms.transform_coords(data["points"], normalize=normalize, orig_hw=im_size)
            labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
            masks, ious = self.refine_with_m2m(in_points, labels, data["low_res_masks"], self.points_per_batch)
            data["masks"] = masks.squeeze(1)
            data["iou_preds"] = ious.squeeze(1)
        if self.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > self.pred_iou_thresh)
        data["stability_score"] = stability_score(data["masks"], self.mask_threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        data["masks"] = data["masks"] > self.mask_threshold
        data["boxes"] = mask_boxes_xyxy(data["masks"])
        keep = ~near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            data.filter(keep)
        data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
        data["rles"] = uncompressed_rles(data["masks"])
        del data["masks"]
        return data

    def refine_with_m2m(
        self, points: torch.Tensor, point_labels: torch.Tensor, low_res_masks: torch.Tensor, points_per_batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode (P, 2) encoder-frame points again with their (P, 256, 256) low-res logits as mask input.

        Returns (P, 1, H, W) logits and (P, 1) IoU of the single-mask output.
        """
        new_masks, new_iou_preds = [], []
        for batch_points, batch_labels, batch_low_res in batch_iterator(
            points_per_batch, points, point_labels, low_res_masks
        ):
            masks, iou_preds, _ = self.predictor._predict(
                batch_points[:, None, :],
                batch_labels[:, None],
                mask_input=batch_low_res[:, None, :],
                multimask_output=False,
                return_logits=True,
            )
            new_masks.append(masks)
            new_iou_preds.append(iou_preds)
        return torch.cat(new_masks, dim=0), torch.cat(new_iou_preds, dim=0)
