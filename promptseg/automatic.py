"""``SamAutomaticMaskGenerator``: masks for everything in an image, prompted by a grid of points.

A drop-in for ``segment_anything.SamAutomaticMaskGenerator``: the same
arguments, defaults and records, computed by a device-resident pipeline:

1. Each crop of the image (the whole image, plus overlapping tiles when
   ``crop_n_layers > 0``) is encoded, crops batched through the encoder.
2. Its grid points are decoded ``points_per_batch`` at a time (on the CPU fewer, by the image
   size: :func:`points_per_decode`); each batch's
   masks are scored (predicted IoU, stability), boxed and filtered on the
   device, and only the low-resolution logits of the survivors are kept.
3. Duplicates are removed by box NMS within each crop, then between crops.
4. The survivors' full-size masks are rebuilt as many at a time,
   cleaned of small holes and islands (``min_mask_region_area``) and run-length
   encoded on the device; only the final records cross to the host.

Every step mirrors the official one (same order of candidates, same NMS
calls), so the records are the official ones. Points are decoded by a
:class:`promptseg.decoders.Decoder` (``decoder=``; by default the one that
``SamPredictor`` picks, which takes promptseg's fused path on a CUDA bf16/fp16
model with the kernels), and masks measured as :mod:`promptseg.amg.decoding` says.

The pipeline (:func:`generate_records`) serves SAM 2 models too: given a ``promptseg.sam2`` model
this generator returns the records of SAM 2's official generator with the same settings, and
``promptseg.sam2.SAM2AutomaticMaskGenerator`` (SAM 2's official arguments: ``use_m2m``,
``multimask_output``, ``mask_threshold``; :class:`GridDecoding`) runs on it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.amg.candidates import Candidates, Crop
from promptseg.amg.decoding import decode_points, measure_masks, refine_points
from promptseg.amg.filters import FilterCounts, FilterTally, quality_keep
from promptseg.amg.batching import MaskData
from promptseg.amg.grids import build_all_layer_point_grids, generate_crop_boxes
from promptseg.amg.mask_data import postprocess_small_regions
from promptseg.amg.nms import crop_nms_keep, nms_keep
from promptseg.amg.regions import RegionCleanup, remove_small_regions_batch
from promptseg.amg.rle import encode_rle
from promptseg.decoders import Decoder
from promptseg.prompts.validate import check_image
from promptseg.modeling import Sam
from promptseg.masks import mask_areas, mask_boxes_xyxy
from promptseg.predictor import SamPredictor, cpu_prompt_batch
from promptseg.prompts.tokens import SAM2_RULE
from promptseg.settings import OFFICIAL, OUTPUT_MODES, SETTING_NAMES, GeneratorSettings, check_int

__all__ = ["GridDecoding", "MaskRecord", "OUTPUT_MODES", "SamAutomaticMaskGenerator", "generate_records", "grid_candidates"]
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
        # Every argument but the model and the decoder is a setting; GeneratorSettings checks them all.
        arguments = locals()
        settings = GeneratorSettings(**{name: arguments[name] for name in SETTING_NAMES})
        if settings.point_grids is None:
            self.point_grids = build_all_layer_point_grids(
                settings.points_per_side, settings.crop_n_layers, settings.crop_n_points_downscale_factor
            )
        else:
            self.point_grids = [np.array(grid, dtype=np.float64) for grid in settings.point_grids]
        self.predictor = SamPredictor(model, decoder=decoder)
        # The official attributes (points_per_batch, pred_iou_thresh, ..., output_mode), and points_per_side.
        for name in SETTING_NAMES:
            if name != "point_grids":
                setattr(self, name, getattr(settings, name))
        self.decoding = GridDecoding()
        """How grid points are decoded (:class:`GridDecoding`; SAM's generator uses its defaults)."""
        self.last_filter_counts: list[FilterCounts] = []
        """Per image of the last :meth:`generate` / :meth:`generate_batch` call, how many candidate
        masks each filter removed (:class:`promptseg.amg.filters.FilterCounts`)."""

    @classmethod
    def from_settings(
        cls,
        model: Sam,
        settings: Optional[GeneratorSettings] = None,
        *,
        decoder: Optional[Decoder] = None,
        **overrides: Any,
    ) -> "SamAutomaticMaskGenerator":
        """A generator with ``settings`` (default :data:`promptseg.settings.OFFICIAL`; e.g.
        ``promptseg.settings.preset_for(model_type)``), changed by ``overrides`` (setting name ->
        value; None keeps the setting, see :meth:`promptseg.settings.GeneratorSettings.replace`)."""
        settings = (OFFICIAL if settings is None else settings).replace(**overrides)
        return cls(model, decoder=decoder, **settings.generator_kwargs())

    @property
    def settings(self) -> GeneratorSettings:
        """The generator's current settings (its attributes, checked)."""
        values = {name: getattr(self, name) for name in SETTING_NAMES if name != "point_grids"}
        return GeneratorSettings(**values, point_grids=self.point_grids if self.points_per_side is None else None)

    # ------------------------------------------------------------------ API
    def generate(self, image: np.ndarray) -> list[MaskRecord]:
        """Masks for one (H, W, 3) uint8 RGB image.

        Returns:
            One record per mask, best first (the official order), each a dict with
            ``segmentation`` ((H, W) bool array, or an RLE dict per ``output_mode``),
            ``area`` (int pixels), ``bbox`` (XYWH ints), ``predicted_iou`` (float),
            ``point_coords`` ([[x, y]], the prompt), ``stability_score`` (float)
            and ``crop_box`` (XYWH ints of the crop the mask came from).
            :attr:`last_filter_counts` says how many candidates each filter removed.
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
            One list of records (as from :meth:`generate`) per image; :attr:`last_filter_counts`
            holds one :class:`promptseg.amg.filters.FilterCounts` per image.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise TypeError("generate_batch expects a sequence of (H, W, 3) images; use generate for one image")
        check_int("batch_size", batch_size, minimum=1)
        for index, image in enumerate(images):
            try:
                check_image(image, "RGB")
            except (TypeError, ValueError) as error:
                raise type(error)(f"images[{index}]: {error}") from None
        results, self.last_filter_counts = generate_records(
            self.predictor, self.settings, self.point_grids, images, batch_size, progress, self.decoding
        )
        return results

    @staticmethod
    def postprocess_small_regions(mask_data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """The official static helper (see :func:`promptseg.amg.mask_data.postprocess_small_regions`);
        :meth:`generate` does the same clean-up on the device."""
        return postprocess_small_regions(mask_data, min_area, nms_thresh)


@dataclass(frozen=True)
class GridDecoding:
    """How grid points are decoded, beyond the settings of :class:`GeneratorSettings` (the options
    of SAM 2's official generator; SAM's generator uses the defaults).

    Attributes:
        multimask_output: three masks per grid point (else one; SAM 2 then makes its dynamic
            multimask choice).
        use_m2m: decode every candidate once more with its own low-res logits (clamped to +-32) as
            mask input and one output mask (SAM 2's ``use_m2m``), before the quality filters.
        mask_threshold: the logit threshold of the masks, their stability and boxes; None: the model's.
    """

    multimask_output: bool = True
    use_m2m: bool = False
    mask_threshold: Optional[float] = None

    def threshold(self, model: Any) -> float:
        """The mask threshold for ``model``: :attr:`mask_threshold`, else the model's."""
        return model.mask_threshold if self.mask_threshold is None else self.mask_threshold


M2M_LOGIT_CLAMP = 32.0
"""Mask inputs of the m2m refinement are low-res logits clamped to +-32, as the official SAM 2
predictor returns them."""


# ------------------------------------------------------------- the pipeline, shared by both generations
@dataclass(frozen=True)
class _Run:
    """What one :func:`generate_records` call works with."""

    predictor: SamPredictor
    decoder: Decoder
    settings: GeneratorSettings
    point_grids: list[np.ndarray]
    decoding: GridDecoding
    sam2: bool

    @property
    def threshold(self) -> float:
        return self.decoding.threshold(self.predictor.model)


def generate_records(
    predictor: SamPredictor,
    settings: GeneratorSettings,
    point_grids: list[np.ndarray],
    images: Sequence[np.ndarray],
    batch_size: int = 4,
    progress: bool = False,
    decoding: GridDecoding = GridDecoding(),
) -> tuple[list[list[MaskRecord]], list[FilterCounts]]:
    """The device-resident generator over checked (H, W, 3) uint8 RGB ``images`` (see the module docstring).

    Args:
        predictor: embeds the crops and decodes their points (its encoder and decoder); a SAM or a
            SAM 2 model.
        settings: the generator settings; point_grids: one (N, 2) grid in [0, 1] per crop layer.
        batch_size: crops encoded together.
        decoding: SAM 2's extra options (:class:`GridDecoding`).
    Returns:
        One list of records per image, and one :class:`FilterCounts` per image.

    For a SAM 2 model (``promptseg.sam2``) the steps are those of SAM 2's official generator:
    ``min_mask_region_area`` removes small holes and sprinkles of the low-res logits before they are
    resized (the decoder's ``RegionCleanup``; no clean-up of the full-size masks afterwards), point
    coordinates are float32, and boxes and crop boxes in the records are floats.
    """
    decoder = predictor.decoder
    sam2 = decoder.token_rule == SAM2_RULE
    if sam2:
        area = settings.min_mask_region_area
        cleanup = RegionCleanup(predictor.model.mask_threshold, area, area) if area > 0 else None
        if cleanup != getattr(decoder, "cleanup", None):
            decoder = decoder.with_cleanup(cleanup)  # type: ignore[attr-defined]
    run = _Run(predictor, decoder, settings, point_grids, decoding, sam2)
    jobs = [
        (image_index, box, layer)
        for image_index, image in enumerate(images)
        for box, layer in zip(*generate_crop_boxes(image.shape[:2], settings.crop_n_layers, settings.crop_overlap_ratio))
    ]
    results: list[list[MaskRecord]] = []
    counts: list[FilterCounts] = []
    crops: list[Crop] = []
    candidates: list[Candidates] = []
    tally = FilterTally()
    with tqdm(total=len(images), desc="generating masks", unit="image", disable=not progress) as bar:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            predictor.set_images(
                [images[image_index][y0:y1, x0:x1] for image_index, (x0, y0, x1, y1), _ in chunk],
                batch_size=len(chunk),
            )
            for slot, (image_index, box, layer) in enumerate(chunk):
                image_size = images[image_index].shape[:2]
                crop = _crop(point_grids, box, layer, predictor.input_sizes[slot])
                candidates.append(
                    grid_candidates(
                        predictor, slot, crop, settings, len(crops), image_size, tally, decoding, run.decoder
                    )
                )
                crops.append(crop)
                is_last_crop = start + slot + 1 == len(jobs) or jobs[start + slot + 1][0] != image_index
                if is_last_crop:
                    results.append(_finish_image(run, crops, candidates, image_size, tally))
                    counts.append(tally.counts(kept=len(results[-1])))
                    crops, candidates, tally = [], [], FilterTally()
                    bar.update()
    predictor.reset_image()
    return results, counts


# ------------------------------------------------------ stage 1: crops
def _crop(point_grids: list[np.ndarray], box: list[int], layer: int, input_size: tuple[int, ...]) -> Crop:
    """A crop and its grid points in crop pixels (the official points: grid * crop size, float64)."""
    x0, y0, x1, y1 = box
    points = point_grids[layer] * np.array([x1 - x0, y1 - y0])
    return Crop((x0, y0, x1, y1), layer, (input_size[0], input_size[1]), points)


# ----------------------------------------------- stage 2: whole image
def _finish_image(
    run: _Run, crops: list[Crop], per_crop: list[Candidates], image_size: tuple[int, ...], tally: FilterTally
) -> list[MaskRecord]:
    """Deduplicate between crops, rebuild and encode the masks (cleaning small regions), write records."""
    settings = run.settings
    candidates = Candidates.cat(per_crop)
    if len(crops) > 1:
        crop_areas = torch.tensor([crop.area for crop in crops], device=candidates.boxes.device)
        before = len(candidates)
        candidates = candidates.select(
            crop_nms_keep(candidates.boxes, crop_areas[candidates.crop_index], settings.crop_nms_thresh)
        )
        tally.add_removed("crop_nms", before - len(candidates))
    crop_index = candidates.crop_index.cpu().numpy()
    encoded = _rebuild_masks(run, crops, candidates, crop_index, image_size)
    boxes = candidates.boxes.cpu().numpy()
    ranking = np.arange(len(candidates))
    if encoded.changed is not None and len(candidates) > 0:
        # Cleaning may create duplicates: NMS again, preferring unchanged masks. The official
        # clean-up NMS runs on the CPU; so does this one, so that its ties (scores are 0 or 1) resolve alike.
        unchanged = torch.from_numpy(~encoded.changed).float()
        threshold = max(settings.box_nms_thresh, settings.crop_nms_thresh)
        ranking = nms_keep(torch.from_numpy(encoded.cleaned_boxes), unchanged, threshold).numpy()
        boxes = np.where(encoded.changed[:, None], encoded.cleaned_boxes, boxes)
        tally.add_removed("small_regions", len(candidates) - len(ranking))

    iou = candidates.iou_predictions.cpu().tolist()
    stability = candidates.stability_scores.cpu().tolist()
    point_index = candidates.point_index.cpu().tolist()
    records = []
    for position in ranking.tolist():
        crop = crops[crop_index[position]]
        x0, y0, x1, y1 = boxes[position].tolist()
        crop_x0, crop_y0, crop_x1, crop_y1 = crop.box
        bbox = [x0, y0, x1 - x0, y1 - y0]
        crop_box = [crop_x0, crop_y0, crop_x1 - crop_x0, crop_y1 - crop_y0]
        point = crop.points[point_index[position]]
        if run.sam2:  # SAM 2's records: float32 points (offset in float32), float boxes
            point = point.astype(np.float32) + np.asarray(crop.box[:2], dtype=np.float32)
            bbox, crop_box = [float(v) for v in bbox], [float(v) for v in crop_box]
        else:
            point = point + crop.box[:2]
        records.append(
            {
                "segmentation": encoded.segmentations[position],
                "area": int(encoded.areas[position]),
                "bbox": bbox,
                "predicted_iou": iou[position],
                "point_coords": [point.tolist()],
                "stability_score": stability[position],
                "crop_box": crop_box,
            }
        )
    return records


def _rebuild_masks(
    run: _Run, crops: list[Crop], candidates: Candidates, crop_index: np.ndarray, image_size: tuple[int, ...]
) -> _EncodedMasks:
    """Full-size masks of the candidates, ``points_per_batch`` at a time: cleaned, measured and encoded.

    SAM 2 cleans small regions on the low-res logits (the decoder's post-processing), not here."""
    settings = run.settings
    clean_full_size = settings.min_mask_region_area > 0 and not run.sam2
    segmentations: list[Any] = [None] * len(candidates)
    positions, areas, cleaned_boxes, changed = [], [], [], []
    step = points_per_decode(settings, candidates.boxes.device, image_size[0] * image_size[1])
    for index, crop in enumerate(crops):
        in_crop = np.flatnonzero(crop_index == index)
        for first in range(0, len(in_crop), step):
            chunk = in_crop[first : first + step]
            low_res = candidates.low_res_logits[torch.as_tensor(chunk, device=candidates.boxes.device)]
            masks = _full_masks(run, low_res, crop, image_size)
            if clean_full_size:
                masks, chunk_changed = remove_small_regions_batch(masks, settings.min_mask_region_area)
                cleaned_boxes.append(mask_boxes_xyxy(masks))
                changed.append(chunk_changed)
            areas.append(mask_areas(masks))
            positions.append(chunk)
            for position, segmentation in zip(chunk, _encode(masks, settings.output_mode)):
                segmentations[position] = segmentation
    order = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    count = len(candidates)
    return _EncodedMasks(
        segmentations=segmentations,
        areas=_in_position_order(areas, order, (count,)),
        cleaned_boxes=_in_position_order(cleaned_boxes, order, (count, 4)) if changed else None,
        changed=_in_position_order(changed, order, (count,)).astype(bool) if changed else None,
    )


def _full_masks(run: _Run, low_res: torch.Tensor, crop: Crop, image_size: tuple[int, ...]) -> torch.Tensor:
    """(M, S, S) low-res logits of a crop -> (M, H, W) bool masks in the image frame.

    The masks are a transposed view of (M, W, H) storage: column-major, the
    order RLE reads them in.
    """
    height, width = image_size
    x0, y0, x1, y1 = crop.box
    storage = torch.zeros(len(low_res), width, height, dtype=torch.bool, device=low_res.device)
    masks = run.decoder.postprocess(
        low_res[:, None], crop.input_size, crop.size, run.predictor.encoder.img_size, run.threshold, False
    )[:, 0]
    storage[:, x0:x1, y0:y1] = masks.transpose(1, 2)
    return storage.transpose(1, 2)


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


def _encode(masks: torch.Tensor, output_mode: str) -> list[Any]:
    """(M, H, W) bool masks -> M segmentations in ``output_mode`` (:data:`OUTPUT_MODES`)."""
    if output_mode == "binary_mask":
        return list(masks.cpu().numpy())
    rles = encode_rle(masks)
    return rles.to_coco() if output_mode == "coco_rle" else rles.to_uncompressed()


# ------------------------------------------------- the grid step, shared with the edge detector
def points_per_decode(settings: GeneratorSettings, device: torch.device, mask_pixels: int) -> int:
    """Grid points decoded (and candidates' masks rebuilt) together: ``settings.points_per_batch``; on
    the CPU at most as many as keep their three full-size masks of ``mask_pixels`` pixels within a few
    megabytes (:func:`promptseg.predictor.cpu_prompt_batch`: one point at a time on a 2-megapixel
    photo, where 64 took 1.2-2.4x as long). The records do not depend on it beyond float32 rounding of
    the batched arithmetic."""
    if device.type != "cpu":
        return settings.points_per_batch
    return cpu_prompt_batch(mask_pixels, 3, settings.points_per_batch)


def grid_candidates(
    predictor: SamPredictor,
    slot: int,
    crop: Crop,
    settings: GeneratorSettings,
    crop_index: int = 0,
    image_size: Optional[tuple[int, ...]] = None,
    tally: Optional[FilterTally] = None,
    decoding: GridDecoding = GridDecoding(),
    decoder: Optional[Decoder] = None,
) -> Candidates:
    """Grid -> decode -> filter -> NMS for one crop: the crop's grid points are decoded
    ``settings.points_per_batch`` at a time (3 masks each), the masks that fail a quality filter
    (:func:`promptseg.amg.filters.quality_keep`) are dropped batch by batch, and duplicates are
    removed by box NMS (``settings.box_nms_thresh``, ranked by predicted IoU).

    The step of :class:`SamAutomaticMaskGenerator` for each crop, and of
    :class:`promptseg.zeroshot.EdgeDetector` for the whole image.

    Args:
        predictor: holds the crop's embedding as image ``slot`` of its current images.
        crop: the crop, its encoder input size and its grid points in crop pixels.
        settings: the generator settings (points_per_batch, pred_iou_thresh, stability_score_thresh,
            stability_score_offset and box_nms_thresh apply here).
        crop_index: the crop's index among its image's crops (``Candidates.crop_index``).
        image_size: (H, W) of the whole image; default: the crop's size (the crop is the image).
        tally: counts the candidates and what each filter removed, if given.
        decoding: SAM 2's options (single-mask output, m2m refinement, mask threshold).
        decoder: decodes and measures (default: the predictor's).
    Returns:
        The surviving candidates, best first, boxes in the image frame.
    """
    image_size = crop.size if image_size is None else image_size
    decoder = predictor.decoder if decoder is None else decoder
    model_points = torch.as_tensor(predictor.transform.apply_coords(crop.points, crop.size), device=predictor.device)
    batch = points_per_decode(settings, model_points.device, crop.size[0] * crop.size[1])
    parts = [
        _decode_batch(predictor, decoder, slot, crop, crop_index, model_points[first : first + batch], first,
                      image_size, settings, tally, decoding)
        for first in range(0, len(model_points), batch)
    ]
    candidates = Candidates.cat(parts)
    before = len(candidates)
    candidates = candidates.select(nms_keep(candidates.boxes, candidates.iou_predictions, settings.box_nms_thresh))
    if tally is not None:
        tally.add_removed("box_nms", before - len(candidates))
    x0, y0, _, _ = crop.box
    offset = torch.tensor([x0, y0, x0, y0], device=candidates.boxes.device)
    return replace(candidates, boxes=candidates.boxes + offset)


def _decode_batch(
    predictor: SamPredictor,
    decoder: Decoder,
    slot: int,
    crop: Crop,
    crop_index: int,
    model_points: torch.Tensor,
    first_point: int,
    image_size: tuple[int, ...],
    settings: GeneratorSettings,
    tally: Optional[FilterTally],
    decoding: GridDecoding,
) -> Candidates:
    """Decode B points of a crop (3 masks each, or 1) and keep the masks that pass every quality filter.

    Args:
        model_points: (B, 2) float64 points in the encoder's input frame.
        first_point: index of the first of them in the crop's grid.
    """
    low_res, iou = decode_points(decoder, predictor.features, slot, model_points, decoding.multimask_output)
    masks_per_point = low_res.shape[1]
    if decoding.use_m2m:
        low_res, iou = refine_points(
            decoder, predictor.features, slot, model_points, low_res, settings.points_per_batch, M2M_LOGIT_CLAMP
        )
    boxes, stability = measure_masks(
        decoder, low_res, crop.input_size, crop.size, predictor.encoder.img_size, decoding.threshold(predictor.model),
        settings.stability_score_offset,
    )
    low_res, iou = low_res.flatten(0, 1), iou.flatten(0, 1)

    height, width = image_size
    keep, removed = quality_keep(
        iou, stability, boxes, crop.box, [0, 0, width, height], settings.pred_iou_thresh,
        settings.stability_score_thresh,
    )
    if tally is not None:
        tally.add_quality(len(iou), removed)
    index = keep.nonzero().squeeze(1)
    return Candidates(
        low_res_logits=low_res[index],
        iou_predictions=iou[index].float(),
        stability_scores=stability[index],
        boxes=boxes[index],
        point_index=first_point + torch.div(index, masks_per_point, rounding_mode="floor"),
        crop_index=torch.full_like(index, crop_index),
    )
