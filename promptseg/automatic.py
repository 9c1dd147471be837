"""``SamAutomaticMaskGenerator``: masks for everything in an image, prompted by a grid of points.

A drop-in for ``segment_anything.SamAutomaticMaskGenerator``: the same
arguments, defaults and records, computed by a device-resident pipeline:

1. Each crop of the image (the whole image, plus overlapping tiles when
   ``crop_n_layers > 0``) is encoded, crops batched through the encoder.
2. Its grid points are decoded ``points_per_batch`` at a time; each batch's
   masks are scored (predicted IoU, stability), boxed and filtered on the
   device, and only the low-resolution logits of the survivors are kept.
3. Duplicates are removed by box NMS within each crop, then between crops.
4. The survivors' full-size masks are rebuilt ``points_per_batch`` at a time,
   cleaned of small holes and islands (``min_mask_region_area``) and run-length
   encoded on the device; only the final records cross to the host.

Every step mirrors the official one (same order of candidates, same NMS
calls), so the records are the official ones. Points are decoded by a
:class:`promptseg.decoders.Decoder` (``decoder=``; by default the one that
``SamPredictor`` picks, which takes promptseg's fused path on a CUDA bf16/fp16
model with the kernels), and masks measured as :mod:`promptseg.amg.decoding` says.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.amg.candidates import Candidates, Crop
from promptseg.amg.decoding import decode_points, measure_masks
from promptseg.amg.filters import near_crop_edge
from promptseg.amg.batching import MaskData
from promptseg.amg.grids import build_all_layer_point_grids, generate_crop_boxes
from promptseg.amg.mask_data import postprocess_small_regions
from promptseg.amg.nms import crop_nms_keep, nms_keep
from promptseg.amg.regions import remove_small_regions_batch
from promptseg.amg.rle import encode_rle
from promptseg.decoders import Decoder
from promptseg.prompts.validate import check_image
from promptseg.modeling import Sam
from promptseg.masks import mask_areas, mask_boxes_xyxy
from promptseg.predictor import SamPredictor

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
MaskRecord = dict[str, Any]


class SamAutomaticMaskGenerator:
    """Generate masks for a whole image from a grid of point prompts, then filter and deduplicate them."""

    def __init__(
        self,
        model: Sam,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[list[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        decoder: Optional[Decoder] = None,
    ) -> None:
        """
        Args:
            model: the SAM to prompt, on the device and in the dtype to run with.
            points_per_side: the grid has points_per_side**2 points on the
                image; None when ``point_grids`` is given.
            points_per_batch: points decoded together; bounds the memory (each
                batch holds 3 * points_per_batch full-size mask logits).
            pred_iou_thresh: keep masks whose predicted IoU is above this (0 keeps all).
            stability_score_thresh: keep masks whose stability score is at least this (0 keeps all).
            stability_score_offset: the logit offset of the stability score.
            box_nms_thresh: box IoU above which NMS drops a duplicate within a crop.
            crop_n_layers: also prompt crops of the image; layer i has (2**i)**2 crops.
            crop_nms_thresh: box IoU above which NMS drops a duplicate between crops.
            crop_overlap_ratio: overlap of layer-1 crops as a fraction of the short image side.
            crop_n_points_downscale_factor: layer i has points_per_side / factor**i points per side.
            point_grids: explicit grids, one (N, 2) array of (x, y) in [0, 1] per
                crop layer; exclusive with ``points_per_side``.
            min_mask_region_area: if > 0, fill holes and remove islands smaller
                than this many pixels (8-connectivity), then deduplicate again.
            output_mode: 'binary_mask' ((H, W) bool arrays), 'uncompressed_rle'
                or 'coco_rle' (pycocotools' compressed string; pycocotools is not needed).
            decoder: what decodes the points (a promptseg addition); default as ``SamPredictor``.
        """
        if (points_per_side is None) == (point_grids is None):
            raise ValueError(
                "exactly one of points_per_side and point_grids must be given, got "
                f"points_per_side={points_per_side!r} and point_grids={'None' if point_grids is None else 'a list'}"
            )
        _check_int("points_per_batch", points_per_batch, minimum=1)
        _check_int("crop_n_layers", crop_n_layers, minimum=0)
        _check_int("crop_n_points_downscale_factor", crop_n_points_downscale_factor, minimum=1)
        _check_int("min_mask_region_area", min_mask_region_area, minimum=0)
        for name, value in (
            ("pred_iou_thresh", pred_iou_thresh),
            ("stability_score_thresh", stability_score_thresh),
            ("stability_score_offset", stability_score_offset),
            ("box_nms_thresh", box_nms_thresh),
            ("crop_nms_thresh", crop_nms_thresh),
            ("crop_overlap_ratio", crop_overlap_ratio),
        ):
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {list(OUTPUT_MODES)}, got {output_mode!r}")
        if points_per_side is not None:
            _check_int("points_per_side", points_per_side, minimum=1)
            sparsest = int(points_per_side / crop_n_points_downscale_factor**crop_n_layers)
            if sparsest < 1:
                raise ValueError(
                    f"points_per_side={points_per_side} with crop_n_points_downscale_factor="
                    f"{crop_n_points_downscale_factor} leaves crop layer {crop_n_layers} "
                    f"with {sparsest} points per side"
                )
            self.point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            self.point_grids = _checked_point_grids(point_grids, crop_n_layers)

        self.predictor = SamPredictor(model, decoder=decoder)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    # ------------------------------------------------------------------ API
    def generate(self, image: np.ndarray) -> list[MaskRecord]:
        """Masks for one (H, W, 3) uint8 RGB image.

        Returns:
            One record per mask, best first (the official order), each a dict with
            ``segmentation`` ((H, W) bool array, or an RLE dict per ``output_mode``),
            ``area`` (int pixels), ``bbox`` (XYWH ints), ``predicted_iou`` (float),
            ``point_coords`` ([[x, y]], the prompt), ``stability_score`` (float)
            and ``crop_box`` (XYWH ints of the crop the mask came from).
        """
        check_image(image, "RGB")
        return self.generate_batch([image])[0]

    @torch.no_grad()
    def generate_batch(
        self, images: Sequence[np.ndarray], batch_size: int = 4, progress: bool = False
    ) -> list[list[MaskRecord]]:
        """Masks for several images; the same records as :meth:`generate` on each.

        Args:
            images: (H, W, 3) uint8 RGB images, of any sizes.
            batch_size: images (crops, with ``crop_n_layers > 0``) encoded together.
            progress: show a progress bar over the images.
        Returns:
            One list of records (as from :meth:`generate`) per image.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise TypeError("generate_batch expects a sequence of (H, W, 3) images; use generate for one image")
        _check_int("batch_size", batch_size, minimum=1)
        for index, image in enumerate(images):
            try:
                check_image(image, "RGB")
            except (TypeError, ValueError) as error:
                raise type(error)(f"images[{index}]: {error}") from None

        jobs = [
            (image_index, box, layer)
            for image_index, image in enumerate(images)
            for box, layer in zip(*generate_crop_boxes(image.shape[:2], self.crop_n_layers, self.crop_overlap_ratio))
        ]
        results: list[list[MaskRecord]] = []
        crops: list[Crop] = []
        candidates: list[Candidates] = []
        with tqdm(total=len(images), desc="generating masks", unit="image", disable=not progress) as bar:
            for start in range(0, len(jobs), batch_size):
                chunk = jobs[start : start + batch_size]
                self.predictor.set_images(
                    [images[image_index][y0:y1, x0:x1] for image_index, (x0, y0, x1, y1), _ in chunk],
                    batch_size=len(chunk),
                )
                for slot, (image_index, box, layer) in enumerate(chunk):
                    image_size = images[image_index].shape[:2]
                    crop = self._crop(box, layer, self.predictor.input_sizes[slot])
                    candidates.append(self._process_crop(slot, crop, len(crops), image_size))
                    crops.append(crop)
                    is_last_crop = start + slot + 1 == len(jobs) or jobs[start + slot + 1][0] != image_index
                    if is_last_crop:
                        results.append(self._finish_image(crops, candidates, image_size))
                        crops, candidates = [], []
                        bar.update()
        self.predictor.reset_image()
        return results

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """The official static helper (see :func:`promptseg.amg.mask_data.postprocess_small_regions`);
        :meth:`generate` does the same clean-up on the device."""
        return postprocess_small_regions(mask_data, min_area, nms_thresh)

    # ------------------------------------------------------ stage 1: crops
    def _crop(self, box: list[int], layer: int, input_size: tuple[int, ...]) -> Crop:
        """A crop and its grid points in crop pixels (the official points: grid * crop size, float64)."""
        x0, y0, x1, y1 = box
        points = self.point_grids[layer] * np.array([x1 - x0, y1 - y0])
        return Crop((x0, y0, x1, y1), layer, (input_size[0], input_size[1]), points)

    def _process_crop(
        self, slot: int, crop: Crop, crop_index: int, image_size: tuple[int, ...]
    ) -> Candidates:
        """Decode the crop's grid batch by batch, filter, and deduplicate by box NMS.

        Args:
            slot: index of the crop's embedding in ``self.predictor.features``.
            crop_index: index of the crop among the image's crops.
        Returns:
            The surviving candidates, best first, boxes in the image frame.
        """
        model_points = torch.as_tensor(
            self.predictor.transform.apply_coords(crop.points, crop.size), device=self.predictor.device
        )
        batch = self.points_per_batch
        parts = [
            self._process_batch(slot, crop, crop_index, model_points[first : first + batch], first, image_size)
            for first in range(0, len(model_points), batch)
        ]
        candidates = Candidates.cat(parts)
        candidates = candidates.select(nms_keep(candidates.boxes, candidates.iou_predictions, self.box_nms_thresh))
        x0, y0, _, _ = crop.box
        offset = torch.tensor([x0, y0, x0, y0], device=candidates.boxes.device)
        return replace(candidates, boxes=candidates.boxes + offset)

    def _process_batch(
        self,
        slot: int,
        crop: Crop,
        crop_index: int,
        model_points: torch.Tensor,
        first_point: int,
        image_size: tuple[int, ...],
    ) -> Candidates:
        """Decode B points of a crop (3 masks each) and keep the masks that pass every filter.

        Args:
            model_points: (B, 2) float64 points in the encoder's input frame.
            first_point: index of the first of them in the crop's grid.
        """
        model, decoder = self.predictor.model, self.predictor.decoder
        low_res, iou = decode_points(decoder, self.predictor.features, slot, model_points)
        masks_per_point = low_res.shape[1]
        boxes, stability = measure_masks(
            decoder, low_res, crop.input_size, crop.size, model.image_encoder.img_size, model.mask_threshold,
            self.stability_score_offset,
        )
        low_res, iou = low_res.flatten(0, 1), iou.flatten(0, 1)

        keep = torch.ones(len(iou), dtype=torch.bool, device=iou.device)
        if self.pred_iou_thresh > 0.0:
            keep &= iou > self.pred_iou_thresh
        if self.stability_score_thresh > 0.0:
            keep &= stability >= self.stability_score_thresh
        height, width = image_size
        keep &= ~near_crop_edge(boxes, crop.box, [0, 0, width, height])
        index = keep.nonzero().squeeze(1)
        return Candidates(
            low_res_logits=low_res[index],
            iou_predictions=iou[index].float(),
            stability_scores=stability[index],
            boxes=boxes[index],
            point_index=first_point + torch.div(index, masks_per_point, rounding_mode="floor"),
            crop_index=torch.full_like(index, crop_index),
        )

    # ----------------------------------------------- stage 2: whole image
    def _finish_image(
        self, crops: list[Crop], per_crop: list[Candidates], image_size: tuple[int, ...]
    ) -> list[MaskRecord]:
        """Deduplicate between crops, rebuild and encode the masks (cleaning small regions), write records."""
        candidates = Candidates.cat(per_crop)
        if len(crops) > 1:
            crop_areas = torch.tensor([crop.area for crop in crops], device=candidates.boxes.device)
            candidates = candidates.select(
                crop_nms_keep(candidates.boxes, crop_areas[candidates.crop_index], self.crop_nms_thresh)
            )
        crop_index = candidates.crop_index.cpu().numpy()
        encoded = self._rebuild_masks(crops, candidates, crop_index, image_size)
        boxes = candidates.boxes.cpu().numpy()
        ranking = np.arange(len(candidates))
        if encoded.changed is not None and len(candidates) > 0:
            # Cleaning may create duplicates: NMS again, preferring unchanged masks. The official
            # clean-up NMS runs on the CPU; so does this one, so that its ties (scores are 0 or 1) resolve alike.
            unchanged = torch.from_numpy(~encoded.changed).float()
            threshold = max(self.box_nms_thresh, self.crop_nms_thresh)
            ranking = nms_keep(torch.from_numpy(encoded.cleaned_boxes), unchanged, threshold).numpy()
            boxes = np.where(encoded.changed[:, None], encoded.cleaned_boxes, boxes)

        iou = candidates.iou_predictions.cpu().tolist()
        stability = candidates.stability_scores.cpu().tolist()
        point_index = candidates.point_index.cpu().tolist()
        records = []
        for position in ranking.tolist():
            crop = crops[crop_index[position]]
            x0, y0, x1, y1 = boxes[position].tolist()
            crop_x0, crop_y0, crop_x1, crop_y1 = crop.box
            records.append(
                {
                    "segmentation": encoded.segmentations[position],
                    "area": int(encoded.areas[position]),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "predicted_iou": iou[position],
                    "point_coords": [(crop.points[point_index[position]] + crop.box[:2]).tolist()],
                    "stability_score": stability[position],
                    "crop_box": [crop_x0, crop_y0, crop_x1 - crop_x0, crop_y1 - crop_y0],
                }
            )
        return records

    def _rebuild_masks(
        self, crops: list[Crop], candidates: Candidates, crop_index: np.ndarray, image_size: tuple[int, ...]
    ) -> _EncodedMasks:
        """Full-size masks of the candidates, ``points_per_batch`` at a time: cleaned, measured and encoded."""
        segmentations: list[Any] = [None] * len(candidates)
        positions, areas, cleaned_boxes, changed = [], [], [], []
        for index, crop in enumerate(crops):
            in_crop = np.flatnonzero(crop_index == index)
            for first in range(0, len(in_crop), self.points_per_batch):
                chunk = in_crop[first : first + self.points_per_batch]
                low_res = candidates.low_res_logits[torch.as_tensor(chunk, device=candidates.boxes.device)]
                masks = self._full_masks(low_res, crop, image_size)
                if self.min_mask_region_area > 0:
                    masks, chunk_changed = remove_small_regions_batch(masks, self.min_mask_region_area)
                    cleaned_boxes.append(mask_boxes_xyxy(masks))
                    changed.append(chunk_changed)
                areas.append(mask_areas(masks))
                positions.append(chunk)
                for position, segmentation in zip(chunk, self._encode(masks)):
                    segmentations[position] = segmentation
        order = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
        count = len(candidates)
        return _EncodedMasks(
            segmentations=segmentations,
            areas=_in_position_order(areas, order, (count,)),
            cleaned_boxes=_in_position_order(cleaned_boxes, order, (count, 4)) if changed else None,
            changed=_in_position_order(changed, order, (count,)).astype(bool) if changed else None,
        )

    def _full_masks(self, low_res: torch.Tensor, crop: Crop, image_size: tuple[int, ...]) -> torch.Tensor:
        """(M, S, S) low-res logits of a crop -> (M, H, W) bool masks in the image frame.

        The masks are a transposed view of (M, W, H) storage: column-major, the
        order RLE reads them in.
        """
        height, width = image_size
        x0, y0, x1, y1 = crop.box
        storage = torch.zeros(len(low_res), width, height, dtype=torch.bool, device=low_res.device)
        model = self.predictor.model
        masks = self.predictor.decoder.postprocess(
            low_res[:, None], crop.input_size, crop.size, model.image_encoder.img_size, model.mask_threshold, False
        )[:, 0]
        storage[:, x0:x1, y0:y1] = masks.transpose(1, 2)
        return storage.transpose(1, 2)

    def _encode(self, masks: torch.Tensor) -> list[Any]:
        """(M, H, W) bool masks -> M segmentations in ``output_mode``."""
        if self.output_mode == "binary_mask":
            return list(masks.cpu().numpy())
        rles = encode_rle(masks)
        return rles.to_coco() if self.output_mode == "coco_rle" else rles.to_uncompressed()


@dataclass
class _EncodedMasks:
    """The rebuilt masks of N candidates, in candidate order, on the host.

    Attributes:
        segmentations: N masks in the generator's ``output_mode``.
        areas: (N,) int64 pixels.
        cleaned_boxes: (N, 4) int64 XYXY boxes after small-region clean-up (None without clean-up).
        changed: (N,) bool, whether the clean-up changed the mask (None without clean-up).
    """

    segmentations: list[Any]
    areas: np.ndarray
    cleaned_boxes: Optional[np.ndarray]
    changed: Optional[np.ndarray]


def _in_position_order(parts: list[torch.Tensor], order: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-chunk device tensors, whose rows belong to positions ``order``, as one host array in position order."""
    result = np.zeros(shape, dtype=np.int64)
    if parts:
        result[order] = torch.cat(parts).cpu().numpy()
    return result


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _checked_point_grids(point_grids: Any, crop_n_layers: int) -> list[np.ndarray]:
    """float64 copies of the grids, one (N, 2) array per crop layer (at least crop_n_layers + 1)."""
    if not isinstance(point_grids, (list, tuple)):
        raise TypeError(
            f"point_grids must be a list of (N, 2) arrays, one per crop layer, got {type(point_grids).__name__}"
        )
    if len(point_grids) < crop_n_layers + 1:
        raise ValueError(
            f"point_grids needs one grid per crop layer ({crop_n_layers + 1} for crop_n_layers={crop_n_layers}), "
            f"got {len(point_grids)}"
        )
    grids = []
    for layer, grid in enumerate(point_grids):
        array = np.array(grid, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
            raise ValueError(f"point_grids[{layer}] must have shape (N, 2) with N >= 1, got {array.shape}")
        grids.append(array)
    return grids
