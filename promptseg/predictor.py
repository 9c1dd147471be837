"""``SamPredictor``: embed an image once, then predict masks for many prompts.

A drop-in for ``segment_anything.SamPredictor`` (same methods, attributes,
shapes, dtypes and values), plus batched calls: many prompts of different
shapes on one image (:meth:`SamPredictor.predict_many`) and many images
encoded in one batch (:meth:`SamPredictor.set_images`,
:meth:`SamPredictor.predict_batch`), and text prompts (``predict(text="red ellipse")``, alone or
with points, a box or a mask input) for a predictor built with ``text=`` (see
:mod:`promptseg.text.prompting`).

Every image is embedded one way: resize -> preprocess and encode (a
:class:`promptseg.encoders.ImageEncoder`, default the model's own module). Every prediction runs
one way: validate (:mod:`promptseg.prompts.validate`) -> tokens (:mod:`promptseg.prompts.tokens`,
packed by :mod:`promptseg.prompts.batch`) -> decode (a :class:`promptseg.decoders.Decoder`) ->
post-process (the decoder's ``postprocess``). Which implementation runs behind either seam is
its own business (``repr(predictor)`` names both): the default
:class:`~promptseg.decoders.AutoDecoder` takes promptseg's fused CUDA path and CUDA graphs where
they apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from promptseg.decoders import AutoDecoder, Decoder, EngineDecoder
from promptseg.encoders import (
    EngineChoice,
    ImageEncoder,
    OnnxRuntimeEngine,
    cat_features,
    default_encoder,
    default_image_encoder,
    image_embedding,
)
from promptseg.errors import ImageNotSetError
from promptseg.modeling import Sam
from promptseg.prompts.batch import pack_prompts, tensor_prompt_batch
from promptseg.prompts.validate import Prompt, check_image, check_prompt, check_prompt_mapping, check_prompt_tensors

if TYPE_CHECKING:
    from promptseg.text.prompting import TextPrompting

PromptLike = Union[Prompt, Mapping[str, Any]]
Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]

GPU_PROMPT_BATCH_SIZE = 64
"""Prompts decoded together by the batched calls on a GPU (``SamPredictor(prompt_batch_size=None)``)."""
CPU_BATCH_BYTES = 8 << 20
"""On the CPU, prompts are decoded together while their full-size float32 masks fit in this many bytes
(:func:`cpu_prompt_batch`). Measured: on truck.jpg (2.2 megapixels, 26 MB of masks per prompt) one prompt
at a time was fastest, and batches of 8 or more 1.4-1.6x slower (one thread, vit_b and the bundled
model); on the bundled model's 256-pixel scenes (0.8 MB per prompt) one at a time lost to batches of 64
with two threads (predict_many 0.79x official against 0.72x; ``benchmarks/NOTES.md``, CPU)."""


def cpu_prompt_batch(mask_pixels: int, masks_per_prompt: int = 3, limit: Optional[int] = None) -> int:
    """Prompts decoded together on the CPU: as many as have ``masks_per_prompt`` float32 masks of
    ``mask_pixels`` pixels within :data:`CPU_BATCH_BYTES`, at least 1 and at most ``limit``."""
    count = max(1, CPU_BATCH_BYTES // max(1, 4 * masks_per_prompt * mask_pixels))
    return count if limit is None else max(1, min(count, limit))


class SamPredictor:
    """Predict masks from prompts on images whose embeddings are computed once."""

    def __init__(
        self,
        sam_model: Sam,
        prompt_batch_size: Optional[int] = None,
        decoder: Optional[Decoder] = None,
        text: Optional["TextPrompting"] = None,
        encoder: Optional[ImageEncoder] = None,
    ) -> None:
        """
        Args:
            sam_model: the model, on the device and in the dtype to run with.
            prompt_batch_size: prompts decoded together by the batched calls;
                bounds the decoder's memory (a promptseg addition). None: 64 on a GPU, and on the
                CPU as many as keep their full-size masks within a few megabytes
                (:func:`cpu_prompt_batch`; one at a time for a photo of a megapixel or more).
            decoder: what decodes prompts (a promptseg addition); default an
                :class:`~promptseg.decoders.AutoDecoder` of ``sam_model``, or where the default
                encoder is the ONNX Runtime engine (and no ``text``), an
                :class:`~promptseg.decoders.EngineDecoder` on the model's exported decoder graph.
            text: the concept encoder and text prompt encoder for text prompts (a promptseg
                addition), from ``promptseg.text.load_text_model``; None: no text prompts.
            encoder: what embeds images (a promptseg addition); default
                :func:`promptseg.encoders.default_image_encoder`: the model's own modules, or for a SAM
                model built by ``build_sam`` the CPU engine it chooses (``engine_choice`` says which and
                why). Its input size must be the model's.

        ``sam_model`` may also be a SAM 2 model (``promptseg.sam2``): its encoder and decoder then take
        SAM 2's frame, token rule and post-processing, and the results are SAM 2's.
        """
        if prompt_batch_size is None and sam_model.device.type != "cpu":
            prompt_batch_size = GPU_PROMPT_BATCH_SIZE
        if prompt_batch_size is not None and (
            isinstance(prompt_batch_size, bool) or not isinstance(prompt_batch_size, int) or prompt_batch_size < 1
        ):
            raise ValueError(f"prompt_batch_size must be an int >= 1 or None, got {prompt_batch_size!r}")
        if decoder is not None and not isinstance(decoder, Decoder):
            raise TypeError(f"decoder must be a promptseg.decoders.Decoder, got {type(decoder).__name__}")
        if encoder is not None and not isinstance(encoder, ImageEncoder):
            raise TypeError(f"encoder must be a promptseg.encoders.ImageEncoder, got {type(encoder).__name__}")
        self.model = sam_model
        self.engine_choice: Optional[EngineChoice] = None
        """Which CPU engine embeds images and why, when the predictor chose it (see ``build_sam(engine=)``)."""
        if encoder is None:
            encoder, self.engine_choice = default_image_encoder(sam_model)
        self.encoder: ImageEncoder = encoder
        model_size = default_encoder(sam_model).img_size
        if self.encoder.img_size != model_size:
            raise ValueError(
                f"the encoder takes {self.encoder.img_size}x{self.encoder.img_size} images, but the model's "
                f"prompts and masks are in a {model_size}-pixel frame"
            )
        self.transform = self.encoder.frame
        self.prompt_batch_size = prompt_batch_size
        if decoder is None:
            entry = self.engine_choice.entry if self.engine_choice is not None else None
            if entry is not None and text is None:
                decoder = EngineDecoder.for_model(OnnxRuntimeEngine(entry.decoder), sam_model)
            else:
                decoder = AutoDecoder(sam_model)
        self.decoder: Decoder = decoder
        if text is not None:
            if not callable(getattr(text, "tokens", None)) or not callable(getattr(text, "check_model", None)):
                raise TypeError(f"text must be a promptseg.text.TextPrompting, got {type(text).__name__}")
            text.check_model(sam_model)
        self.text = text
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
        (self.orig_h, self.orig_w), (self.input_h, self.input_w) = self.original_size, self.input_size
        self.features = self.encoder.encode(self.encoder.preprocess(transformed_image))
        self.decoder.prepare(self.features)
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
            padded = torch.stack([self.encoder.preprocess(self._resized_tensor(image)) for image in chunk])
            features.append(self.encoder.encode(padded))
        self.features = cat_features(features)
        self.decoder.prepare(self.features)
        self.original_sizes = [tuple(image.shape[:2]) for image in rgb_images]
        self.input_sizes = [self.transform.get_preprocess_shape(h, w, self.transform.target_length) for h, w in self.original_sizes]
        if len(rgb_images) == 1:
            self.original_size, self.input_size = self.original_sizes[0], self.input_sizes[0]
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The (B, C, h, w) image embedding(s); B = 1 after :meth:`set_image`."""
        self._require_image("generate an embedding")
        return image_embedding(self.features)

    def reset_image(self) -> None:
        """Forget the current image(s)."""
        self.is_image_set = False
        self.features: Optional[torch.Tensor] = None
        self.original_size: Optional[tuple[int, ...]] = None
        self.input_size: Optional[tuple[int, ...]] = None
        self.original_sizes: list[tuple[int, ...]] = []
        self.input_sizes: list[tuple[int, ...]] = []
        self.orig_h = self.orig_w = self.input_h = self.input_w = None  # the official attributes

    @property
    def device(self) -> torch.device:
        """Where images and prompts are put: the encoder's device."""
        return self.encoder.device

    def __repr__(self) -> str:
        images = len(self.original_sizes) if self.is_image_set else 0
        engine = f", engine={str(self.engine_choice)!r}" if self.engine_choice is not None else ""
        return f"{type(self).__name__}(encoder={self.encoder!r}, decoder={self.decoder!r}{engine}, images_set={images})"

    # ---------------------------------------------------------------- prompts
    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        text: Optional[str] = None,
    ) -> Prediction:
        """Masks for one prompt on the current image.

        Args:
            point_coords: (N, 2) pixel (x, y) in the original image.
            point_labels: (N,) 1 for foreground, 0 for background.
            box: (4,) XYXY box in pixels of the original image.
            mask_input: (1, 256, 256) low-res logits from a previous prediction.
            multimask_output: return 3 ambiguity masks instead of 1.
            return_logits: return float logits instead of boolean masks.
            text: a phrase naming the object ("red ellipse"), alone or with the other prompts
                (a promptseg addition; needs a predictor built with ``text=``). The bundled text
                weights are trained for the single-mask output: pass ``multimask_output=False``.
        Returns:
            masks: (C, H, W) bool (float32 logits with return_logits), C = 3 or 1.
            scores: (C,) float32 predicted IoU.
            low_res_logits: (C, 256, 256) float32.
        """
        self._require_single_image()
        prompt = check_prompt(point_coords, point_labels, box, mask_input, self._mask_size, text)
        masks, scores, logits = self._predict_prompts([(0, prompt)], multimask_output, return_logits)[0]
        return masks[0], scores[0], logits[0]

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
        batch = tensor_prompt_batch(point_coords, point_labels, boxes, mask_input, self.decoder.token_rule)
        low_res_masks, iou_predictions = self.decoder.decode(
            self.features, batch, [0] * len(batch.labels), multimask_output
        )
        masks = self._full_size(low_res_masks, 0, return_logits)
        return masks, iou_predictions, low_res_masks

    def predict_many(
        self, prompts: Sequence[PromptLike], multimask_output: bool = True, return_logits: bool = False
    ) -> Prediction:
        """Masks for P prompts of any shapes on the current image, decoded in batches.

        Each prompt is a dict with the keyword arguments of :meth:`predict`
        (``point_coords``, ``point_labels``, ``box``, ``mask_input``, ``text``) or a
        :class:`promptseg.prompts.validate.Prompt`; prompts may have different numbers of
        points, a box, points and a box, and/or a mask input. Results equal
        calling :meth:`predict` once per prompt.

        Returns:
            masks (P, C, H, W), scores (P, C), low_res_logits (P, C, 256, 256), as in :meth:`predict`.
        """
        self._require_single_image()
        if isinstance(prompts, (str, Mapping, Prompt)):
            raise TypeError(
                f"predict_many expects a sequence of prompts, got one {type(prompts).__name__}; "
                "pass a list such as [{'text': 'red ellipse'}, {'point_coords': ..., 'point_labels': ...}]"
            )
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
            if isinstance(prompts, (str, Mapping, Prompt)):
                raise TypeError(f"prompts for image {image_index} must be a sequence of prompts, got one prompt")
            flat.extend((image_index, check_prompt_mapping(p, self._mask_size)) for p in prompts)
        return self._predict_prompts(flat, multimask_output, return_logits)

    @torch.no_grad()
    def _predict_prompts(
        self, flat: list[tuple[int, Prompt]], multimask_output: bool, return_logits: bool
    ) -> list[Prediction]:
        """Tokens -> decode -> post-process for validated prompts listed image by image as (image, prompt)."""
        masks: list[list[torch.Tensor]] = [[] for _ in self.original_sizes]
        scores: list[list[torch.Tensor]] = [[] for _ in self.original_sizes]
        logits: list[list[torch.Tensor]] = [[] for _ in self.original_sizes]
        texts = self._text_tokens([prompt.text for _, prompt in flat])
        step = self.prompt_batch_size
        if step is None:  # the CPU's default: by the largest image's masks
            step = cpu_prompt_batch(max((height * width for height, width in self.original_sizes), default=1))
        for start in range(0, len(flat), step):
            chunk = flat[start : start + step]
            chunk_images = [index for index, _ in chunk]
            batch = pack_prompts(
                [prompt for _, prompt in chunk],
                [self.original_sizes[index] for index in chunk_images],
                self.transform,
                self.device,
                [texts.get(prompt.text) for _, prompt in chunk] if texts else None,
                token_rule=self.decoder.token_rule,
            )
            low_res, iou = self.decoder.decode(self.features, batch, chunk_images, multimask_output)
            # ``flat`` lists prompts image by image, so each image's prompts form one run of the chunk.
            for image, rows in _runs(chunk_images):
                masks[image].append(self._full_size(low_res[rows], image, return_logits))
                scores[image].append(iou[rows])
                logits[image].append(low_res[rows])
        channels = 3 if multimask_output else 1
        side = self._mask_size
        results = []
        for image, (height, width) in enumerate(self.original_sizes):
            empty = (
                np.zeros((0, channels, height, width), dtype=np.float32 if return_logits else np.bool_),
                np.zeros((0, channels), dtype=np.float32),
                np.zeros((0, channels, side, side), dtype=np.float32),
            )
            parts = [masks[image], scores[image], logits[image]]
            if not parts[0]:
                results.append(empty)
            else:
                joined = [part[0] if len(part) == 1 else torch.cat(part) for part in parts]  # one batch: no copy
                results.append(tuple(_to_host(joined)))  # type: ignore[arg-type]
        return results

    def _full_size(self, low_res: torch.Tensor, image: int, return_logits: bool) -> torch.Tensor:
        """(P, C, h, w) low-res logits of ``image`` -> (P, C, H, W) bool masks (float32 logits with return_logits)."""
        return self.decoder.postprocess(
            low_res, self.input_sizes[image], self.original_sizes[image], self.encoder.img_size,
            self.model.mask_threshold, return_logits,
        )

    def _text_tokens(self, texts: Sequence[Optional[str]]) -> dict[str, torch.Tensor]:
        """Each distinct phrase of ``texts`` (None: no text) -> its (k, C) tokens, encoded in one call."""
        distinct = list(dict.fromkeys(text for text in texts if text is not None))
        if not distinct:
            return {}
        if self.text is None:
            from promptseg.text.prompting import NO_TEXT_WEIGHTS

            raise ValueError(f"a text prompt ({distinct[0]!r}) was given, but {NO_TEXT_WEIGHTS}")
        tokens = self.text.tokens(distinct, self.device, self.model.prompt_encoder.dtype)
        return dict(zip(distinct, tokens))

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
        side = self.encoder.img_size
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


def _to_host(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Numpy copies of ``tensors``; floating ones become float32 (numpy has no bfloat16). From a GPU
    the copies go through pinned memory with one synchronisation for all of them."""
    tensors = [t.detach().float() if t.is_floating_point() else t.detach() for t in tensors]
    if not tensors or not tensors[0].is_cuda:
        return [t.cpu().numpy() for t in tensors]
    host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for target, source in zip(host, tensors):
        target.copy_(source, non_blocking=True)
    torch.cuda.current_stream(tensors[0].device).synchronize()
    return [target.numpy() for target in host]


def _runs(values: list[int]) -> list[tuple[int, slice]]:
    """(value, slice) for each run of equal consecutive ``values``."""
    runs: list[tuple[int, slice]] = []
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or values[end] != values[start]:
            runs.append((values[start], slice(start, end)))
            start = end
    return runs
