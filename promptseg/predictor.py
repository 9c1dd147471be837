"""``SamPredictor``: embed an image once, then predict masks for many prompts.

A drop-in for ``segment_anything.SamPredictor`` (same methods, attributes,
shapes, dtypes and values), plus batched calls: many prompts of different
shapes on one image (:meth:`SamPredictor.predict_many`) and many images
encoded in one batch (:meth:`SamPredictor.set_images`,
:meth:`SamPredictor.predict_batch`).

A bf16/fp16 model on a CUDA device with the compiled kernels takes the fused
path of :mod:`promptseg.fast_path` in :meth:`SamPredictor.predict`,
:meth:`SamPredictor.predict_many` and :meth:`SamPredictor.predict_batch`;
everything else runs the model's modules as they are.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.errors import ImageNotSetError
from promptseg.fast_path import (
    ClickGraphs,
    ImageTable,
    decode_prompt_batch,
    fused_path_available,
    image_table,
    image_table_key,
    select_outputs,
)
from promptseg.inputs import Prompt, check_image, check_prompt, check_prompt_mapping, check_prompt_tensors
from promptseg.modeling import Sam
from promptseg.ops import mask_postprocess
from promptseg.prompt_batch import PromptBatch, pack_prompts, prompt_tokens
from promptseg.utils.transforms import ResizeLongestSide

PromptLike = Union[Prompt, Mapping[str, Any]]
Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


class SamPredictor:
    """Predict masks from prompts on images whose embeddings are computed once."""

    def __init__(self, sam_model: Sam, prompt_batch_size: int = 64) -> None:
        """
        Args:
            sam_model: the model, on the device and in the dtype to run with.
            prompt_batch_size: prompts decoded together by the batched calls;
                bounds the decoder's memory (a promptseg addition).
        """
        if prompt_batch_size < 1:
            raise ValueError(f"prompt_batch_size must be >= 1, got {prompt_batch_size}")
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self.prompt_batch_size = prompt_batch_size
        self.use_cuda_graphs = True
        """On the fused path, replay :meth:`predict` from CUDA graphs (False: the same work, eagerly)."""
        self._click_graphs: Optional[ClickGraphs] = None
        self.reset_image()

    # ----------------------------------------------------------------- images
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Compute the embedding of an (H, W, 3) uint8 image in ``image_format`` ('RGB' or 'BGR')."""
        rgb = self._to_model_format(image, image_format)
        self.set_torch_image(self._resized_tensor(rgb)[None], rgb.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Compute the embedding of a (1, 3, h, w) image already resized with ResizeLongestSide.

        Args:
            transformed_image: (1, 3, h, w), values 0..255, max(h, w) equal to the encoder input size.
            original_image_size: (H, W) of the image before resizing.
        """
        self._check_transformed(transformed_image, expect_batch=1)
        self.reset_image()
        self.original_size = tuple(original_image_size)
        self.input_size = tuple(transformed_image.shape[-2:])
        self.original_sizes = [self.original_size]
        self.input_sizes = [self.input_size]
        self.features = self.model.image_encoder(self.model.preprocess(transformed_image))
        self.is_image_set = True

    @torch.no_grad()
    def set_images(
        self,
        images: Sequence[np.ndarray],
        image_format: str = "RGB",
        batch_size: int = 4,
        progress: bool = False,
    ) -> None:
        """Compute the embeddings of several images, running the encoder ``batch_size`` images at a time.

        Images may have different sizes. Afterwards ``features`` is
        (len(images), C, h, w), ``original_sizes``/``input_sizes`` list each
        image's sizes, and :meth:`predict_batch` takes prompts per image.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise TypeError("set_images expects a sequence of (H, W, 3) images; use set_image for one image")
        if len(images) == 0:
            raise ValueError("set_images needs at least one image")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rgb_images = [self._to_model_format(image, image_format) for image in images]
        self.reset_image()
        features = []
        starts = range(0, len(rgb_images), batch_size)
        for start in tqdm(starts, desc="encoding images", unit="batch", disable=not progress):
            chunk = rgb_images[start : start + batch_size]
            padded = torch.stack([self.model.preprocess(self._resized_tensor(image)) for image in chunk])
            features.append(self.model.image_encoder(padded))
        self.features = torch.cat(features)
        self.original_sizes = [tuple(image.shape[:2]) for image in rgb_images]
        self.input_sizes = [self.transform.get_preprocess_shape(h, w, self.transform.target_length) for h, w in self.original_sizes]
        if len(rgb_images) == 1:
            self.original_size, self.input_size = self.original_sizes[0], self.input_sizes[0]
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The (B, C, h, w) image embedding(s); B = 1 after :meth:`set_image`."""
        self._require_image("generate an embedding")
        return self.features

    def reset_image(self) -> None:
        """Forget the current image(s)."""
        self.is_image_set = False
        self.features: Optional[torch.Tensor] = None
        self.original_size: Optional[tuple[int, ...]] = None
        self.input_size: Optional[tuple[int, ...]] = None
        self.original_sizes: list[tuple[int, ...]] = []
        self.input_sizes: list[tuple[int, ...]] = []
        self._table: Optional[tuple[tuple, ImageTable]] = None  # (image_table_key, table) of a single image

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---------------------------------------------------------------- prompts
    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """Masks for one prompt on the current image.

        Args:
            point_coords: (N, 2) pixel (x, y) in the original image.
            point_labels: (N,) 1 for foreground, 0 for background.
            box: (4,) XYXY box in pixels of the original image.
            mask_input: (1, 256, 256) low-res logits from a previous prediction.
            multimask_output: return 3 ambiguity masks instead of 1.
            return_logits: return float logits instead of boolean masks.
        Returns:
            masks: (C, H, W) bool (float32 logits with return_logits), C = 3 or 1.
            scores: (C,) float32 predicted IoU.
            low_res_logits: (C, 256, 256) float32.
        """
        self._require_single_image()
        prompt = check_prompt(point_coords, point_labels, box, mask_input, self._mask_size)
        if self._fused():
            return self._predict_fused(prompt, multimask_output, return_logits)
        coords = labels = boxes = masks = None
        if prompt.point_coords is not None:
            coords = self._as_tensor(self.transform.apply_coords(prompt.point_coords, self.original_size))[None]
            labels = torch.as_tensor(prompt.point_labels, dtype=torch.int, device=self.device)[None]
        if prompt.box is not None:
            boxes = self._as_tensor(self.transform.apply_boxes(prompt.box, self.original_size))
        if prompt.mask_input is not None:
            masks = self._as_tensor(prompt.mask_input)[None]
        outputs = self.predict_torch(coords, labels, boxes, masks, multimask_output, return_logits)
        return tuple(_to_numpy(output[0]) for output in outputs)  # type: ignore[return-value]

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks for a batch of B same-shaped prompts given as tensors in the resized frame.

        Args:
            point_coords: (B, N, 2) float, already transformed with ResizeLongestSide.
            point_labels: (B, N) int: 1 foreground, 0 background, -1 "not a point"
                padding, 2/3 box corners.
            boxes: (B, 4) XYXY, already transformed.
            mask_input: (B, 1, 256, 256) low-res logits.
        Returns:
            masks (B, C, H, W) bool (float32 logits with return_logits),
            iou_predictions (B, C) and low_res_masks (B, C, 256, 256) in the model dtype.
        """
        self._require_single_image()
        check_prompt_tensors(point_coords, point_labels, boxes, mask_input, self._mask_size)
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res_masks, iou_predictions = self.model.mask_decoder(
            image_embeddings=self.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        masks = self.model.postprocess_masks(low_res_masks, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou_predictions, low_res_masks

    def predict_many(
        self, prompts: Sequence[PromptLike], multimask_output: bool = True, return_logits: bool = False
    ) -> Prediction:
        """Masks for P prompts of any shapes on the current image, decoded in batches.

        Each prompt is a dict with the keyword arguments of :meth:`predict`
        (``point_coords``, ``point_labels``, ``box``, ``mask_input``) or a
        :class:`promptseg.inputs.Prompt`; prompts may have different numbers of
        points, a box, points and a box, and/or a mask input. Results equal
        calling :meth:`predict` once per prompt.

        Returns:
            masks (P, C, H, W), scores (P, C), low_res_logits (P, C, 256, 256), as in :meth:`predict`.
        """
        self._require_single_image()
        return self.predict_batch([prompts], multimask_output, return_logits)[0]

    @torch.no_grad()
    def predict_batch(
        self,
        prompts_per_image: Sequence[Sequence[PromptLike]],
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> list[Prediction]:
        """Masks for prompts on each of the images set by :meth:`set_images` (or :meth:`set_image`).

        Args:
            prompts_per_image: one sequence of prompts (as in :meth:`predict_many`) per image.
        Returns:
            One (masks, scores, low_res_logits) tuple per image, shaped as in :meth:`predict_many`.
        """
        self._require_image("predict masks")
        if len(prompts_per_image) != len(self.original_sizes):
            raise ValueError(
                f"prompts_per_image must hold one sequence of prompts per image ({len(self.original_sizes)}), "
                f"got {len(prompts_per_image)}"
            )
        flat: list[tuple[int, Prompt]] = []
        for image_index, prompts in enumerate(prompts_per_image):
            if isinstance(prompts, (Mapping, Prompt)):
                raise TypeError(f"prompts for image {image_index} must be a sequence of prompts, got one prompt")
            flat.extend((image_index, check_prompt_mapping(p, self._mask_size)) for p in prompts)
        masks: list[list[torch.Tensor]] = [[] for _ in self.original_sizes]
        scores: list[list[torch.Tensor]] = [[] for _ in self.original_sizes]
        logits: list[list[torch.Tensor]] = [[] for _ in self.original_sizes]
        fused = self._fused()
        for start in range(0, len(flat), self.prompt_batch_size):
            chunk = flat[start : start + self.prompt_batch_size]
            chunk_images = [index for index, _ in chunk]
            batch = pack_prompts(
                [prompt for _, prompt in chunk],
                [self.original_sizes[index] for index in chunk_images],
                self.transform,
                self.device,
            )
            if fused:
                low_res, iou = self._decode_fused(batch, chunk_images, multimask_output)
            else:
                low_res, iou = self._decode(batch, torch.tensor(chunk_images, device=self.device), multimask_output)
            # ``flat`` lists prompts image by image, so each image's prompts form one run of the chunk.
            for image, rows in _runs(chunk_images):
                masks[image].append(self._full_size(low_res[rows], image, return_logits, fused))
                scores[image].append(iou[rows])
                logits[image].append(low_res[rows])
        channels = 3 if multimask_output else 1
        results = []
        for image, (height, width) in enumerate(self.original_sizes):
            empty_masks = (0, channels, height, width)
            results.append(
                (
                    _concat_numpy(masks[image], empty_masks, np.float32 if return_logits else np.bool_),
                    _concat_numpy(scores[image], (0, channels), np.float32),
                    _concat_numpy(logits[image], (0, channels, self._mask_size, self._mask_size), np.float32),
                )
            )
        return results

    def _decode(
        self, batch: PromptBatch, image_index: torch.Tensor, multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the prompt encoder and the mask decoder on a packed batch; (P, C, 256, 256) logits and (P, C) IoU."""
        encoder = self.model.prompt_encoder
        sparse = encoder.embed_tokens(batch.coords, batch.labels)
        dense = encoder.no_mask_dense_embeddings(len(batch.labels))
        if batch.has_mask is not None:
            dense = torch.where(batch.has_mask[:, None, None, None], encoder._embed_masks(batch.mask_inputs), dense)
        return self.model.mask_decoder(
            image_embeddings=self.features,
            image_pe=encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            image_index=image_index,
            token_padding_mask=batch.token_mask,
        )

    def _fused(self) -> bool:
        """True when the fused CUDA path applies (see :func:`promptseg.fast_path.fused_path_available`)
        and no subclass replaced the network calls (``_decode``, ``predict_torch``)."""
        replaced = type(self)._decode is not SamPredictor._decode
        replaced = replaced or type(self).predict_torch is not SamPredictor.predict_torch
        return not replaced and fused_path_available(self.model, self.features)

    @torch.no_grad()
    def _image_table(self, images: list[int]) -> ImageTable:
        """The :class:`~promptseg.fast_path.ImageTable` of ``images`` (sorted, distinct); cached for a single image."""
        if len(self.original_sizes) == 1:
            key = image_table_key(self.model, self.features)
            if self._table is None or self._table[0] != key:
                self._table = (key, image_table(self.model, self.features))
            return self._table[1]
        rows = torch.tensor(images, device=self.device)
        return image_table(self.model, self.features[rows] if len(images) < len(self.features) else self.features)

    def _decode_fused(
        self, batch: PromptBatch, chunk_images: list[int], multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`_decode`, on the fused path; ``chunk_images`` is the image of each prompt."""
        images = sorted(set(chunk_images))
        row_of = {image: row for row, image in enumerate(images)}
        table = self._image_table(images)
        masks, iou = decode_prompt_batch(self.model, table, [row_of[image] for image in chunk_images], batch)
        return select_outputs(masks, iou, multimask_output)

    def _full_size(self, low_res: torch.Tensor, image: int, return_logits: bool, fused: bool) -> torch.Tensor:
        """(P, C, h, w) low-res logits of ``image`` -> (P, C, H, W) bool masks (float32 logits with return_logits)."""
        if fused:
            return mask_postprocess(
                low_res, self.input_sizes[image], self.original_sizes[image], self.model.image_encoder.img_size,
                self.model.mask_threshold, return_logits,
            ).masks
        full = self.model.postprocess_masks(low_res, self.input_sizes[image], self.original_sizes[image])
        return full if return_logits else full > self.model.mask_threshold

    def _predict_fused(self, prompt: Prompt, multimask_output: bool, return_logits: bool) -> Prediction:
        """:meth:`predict` on the fused path, replayed from CUDA graphs unless ``use_cuda_graphs`` is False."""
        coords, labels = prompt_tokens(prompt, self.transform, self.original_size)
        if self._click_graphs is None or self._click_graphs.model is not self.model:
            self._click_graphs = ClickGraphs(self.model)
        return self._click_graphs.predict(
            self._image_table([0]), coords, labels, prompt.mask_input, self.input_size, self.original_size,
            multimask_output, return_logits, use_graphs=self.use_cuda_graphs,
        )

    # ---------------------------------------------------------------- helpers
    @property
    def _mask_size(self) -> int:
        return self.model.prompt_encoder.mask_input_size[0]

    def _to_model_format(self, image: np.ndarray, image_format: str) -> np.ndarray:
        rgb = check_image(image, image_format)
        return rgb[..., ::-1] if self.model.image_format == "BGR" else rgb

    def _resized_tensor(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, h, w) uint8 tensor on the model device, resized with ResizeLongestSide."""
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        return torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()

    def _as_tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=torch.float, device=self.device)

    def _check_transformed(self, image: torch.Tensor, expect_batch: int) -> None:
        side = self.model.image_encoder.img_size
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"transformed_image must be a torch.Tensor, got {type(image).__name__}")
        if image.dim() != 4 or image.shape[0] != expect_batch or image.shape[1] != 3 or max(image.shape[2:]) != side:
            raise ValueError(
                f"transformed_image must be ({expect_batch}, 3, h, w) with max(h, w) = {side} "
                f"(resized with ResizeLongestSide), got {tuple(image.shape)}"
            )

    def _require_image(self, action: str) -> None:
        if not self.is_image_set:
            raise ImageNotSetError(f"An image must be set with .set_image(...) before you can {action}.")

    def _require_single_image(self) -> None:
        self._require_image("predict masks")
        if len(self.original_sizes) != 1:
            raise ValueError(
                f"{len(self.original_sizes)} images are set; use predict_batch to give prompts per image"
            )


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU numpy copy; floating tensors become float32 (numpy has no bfloat16)."""
    tensor = tensor.detach()
    if tensor.is_floating_point():
        tensor = tensor.float()
    return tensor.cpu().numpy()


def _runs(values: list[int]) -> list[tuple[int, slice]]:
    """(value, slice) for each run of equal consecutive ``values``."""
    runs: list[tuple[int, slice]] = []
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or values[end] != values[start]:
            runs.append((values[start], slice(start, end)))
            start = end
    return runs


def _concat_numpy(parts: list[torch.Tensor], empty_shape: tuple[int, ...], empty_dtype: type) -> np.ndarray:
    if not parts:
        return np.zeros(empty_shape, dtype=empty_dtype)
    return _to_numpy(torch.cat(parts))
