"""``SAM2ImagePredictor`` under the official ``sam2.sam2_image_predictor`` path: embed an image (or a
batch of images) once, then predict masks for many prompts.

The same methods, arguments, attributes (``model``, ``mask_threshold``, ``_features``,
``_orig_hw``, ``_transforms``) and outputs as the official class, on promptseg's two seams: images
are embedded by an :class:`~promptseg.encoders.ImageEncoder` (default
:class:`~promptseg.encoders.Sam2ImageEncoder`) and prompts decoded by a
:class:`~promptseg.decoders.Decoder` (default :class:`~promptseg.decoders.AutoDecoder`, which takes
promptseg's fused path on CUDA bf16/fp16). A prediction runs one way: check the prompt
(:mod:`promptseg.sam2.prompts`) -> coordinates into the encoder's frame -> SAM 2's tokens
(:mod:`promptseg.prompts.tokens`, ``rule="sam2"``) -> ``Decoder.decode`` -> ``Decoder.postprocess``
(hole / sprinkle removal, resize) -> threshold.

promptseg additions: :meth:`SAM2ImagePredictor.predict_many` (prompts of different shapes on one
image, decoded in batches) and :meth:`SAM2ImagePredictor.predict_many_batch` (prompts per image of
:meth:`set_image_batch`), ``decoder=``, ``encoder=``, ``prompt_batch_size=``, and :attr:`engine`,
the :class:`~promptseg.predictor.SamPredictor` that holds the images (``SamPredictor`` takes SAM 2
models too).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from PIL.Image import Image

from promptseg.amg.regions import RegionCleanup
from promptseg.decoders import AutoDecoder, Decoder
from promptseg.encoders import ImageEncoder, MultiScaleFeatures, Sam2ImageEncoder
from promptseg.errors import ImageNotSetError
from promptseg.predictor import SamPredictor
from promptseg.prompts.batch import tensor_prompt_batch
from promptseg.prompts.tokens import SAM2_RULE
from promptseg.prompts.validate import Prompt, check_image
from promptseg.sam2.modeling.sam2_base import SAM2Base
from promptseg.sam2.prompts import check_sam2_prompt
from promptseg.sam2.utils.transforms import SAM2Transforms

__all__ = ["SAM2ImagePredictor"]

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]
LOW_RES_LOGIT_CLAMP = 32.0
"""Low-res logits are returned clamped to +-32 (the official value), ready to be fed back as mask_input."""


class SAM2ImagePredictor:
    """Predict masks from prompts on images whose features are computed once."""

    def __init__(
        self,
        sam_model: SAM2Base,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        *,
        decoder: Optional[Decoder] = None,
        encoder: Optional[ImageEncoder] = None,
        prompt_batch_size: Optional[int] = None,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            sam_model: the SAM 2 model, on the device to run on.
            mask_threshold: logit threshold of the returned binary masks.
            max_hole_area, max_sprinkle_area: fill background regions / clear foreground regions of
                at most this many pixels of the 256x256 low-res masks before resizing (0: off).
            decoder: what decodes prompts (a promptseg addition); default an
                :class:`~promptseg.decoders.AutoDecoder` of ``sam_model``. It gets this predictor's
                hole / sprinkle settings (``with_cleanup``).
            encoder: what embeds images (a promptseg addition); default a
                :class:`~promptseg.encoders.Sam2ImageEncoder` of ``sam_model``.
            prompt_batch_size: prompts decoded together by :meth:`predict_many` (a promptseg addition;
                None: as ``SamPredictor``, 64 on a GPU and by the image size on the CPU).
            **kwargs: accepted and ignored, as officially.
        """
        if not isinstance(sam_model, SAM2Base):
            raise TypeError(
                f"SAM2ImagePredictor takes a SAM 2 model from promptseg.sam2.build_sam2, got {type(sam_model).__name__}"
            )
        self.model = sam_model
        self._transforms = SAM2Transforms(
            resolution=sam_model.image_size,
            mask_threshold=mask_threshold,
            max_hole_area=max_hole_area,
            max_sprinkle_area=max_sprinkle_area,
        )
        self.mask_threshold = mask_threshold
        stride = sam_model.image_size // 16
        self._bb_feat_sizes = [(4 * stride, 4 * stride), (2 * stride, 2 * stride), (stride, stride)]
        decoder = decoder if decoder is not None else AutoDecoder(sam_model)
        cleanup = RegionCleanup(mask_threshold, max_hole_area, max_sprinkle_area)
        if hasattr(decoder, "with_cleanup"):
            decoder = decoder.with_cleanup(cleanup)
        elif cleanup.active:
            raise ValueError(f"max_hole_area / max_sprinkle_area need a SAM 2 decoder, got {decoder!r}")
        encoder = encoder if encoder is not None else Sam2ImageEncoder(sam_model)
        self.engine = SamPredictor(sam_model, prompt_batch_size, decoder=decoder, encoder=encoder)
        """The :class:`~promptseg.predictor.SamPredictor` holding the images set and the seams (a promptseg addition)."""
        self._is_batch = False

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> "SAM2ImagePredictor":
        """A predictor of an official model from the Hugging Face Hub (see :func:`build_sam2_hf`)."""
        from promptseg.sam2.build_sam import build_sam2_hf

        return cls(build_sam2_hf(model_id, **kwargs), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def decoder(self) -> Decoder:
        """What decodes prompts (a promptseg addition)."""
        return self.engine.decoder

    @property
    def encoder(self) -> ImageEncoder:
        """What embeds images (a promptseg addition)."""
        return self.engine.encoder

    @property
    def _is_image_set(self) -> bool:
        return self.engine.is_image_set

    @property
    def _orig_hw(self) -> Optional[list[tuple[int, int]]]:
        """(H, W) of each image set, as the official attribute (None before an image is set)."""
        return [tuple(size) for size in self.engine.original_sizes] if self.engine.is_image_set else None

    @property
    def _features(self) -> Optional[dict[str, Any]]:
        """{"image_embed": (B, C, h, w), "high_res_feats": [(B, C/8, 4h, 4w), (B, C/4, 2h, 2w)]}, as officially."""
        if not self.engine.is_image_set:
            return None
        features = self._multiscale()
        return {"image_embed": features.embedding, "high_res_feats": list(features.high_res)}

    def reset_predictor(self) -> None:
        """Forget the image(s) and their features."""
        self.engine.reset_image()
        self._is_batch = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(engine={self.engine!r})"

    # ------------------------------------------------------------------ images
    @torch.no_grad()
    def set_image(self, image: Union[np.ndarray, Image]) -> None:
        """Compute the features of one image: an (H, W, 3) uint8 RGB array or a PIL image."""
        self.reset_predictor()
        self.engine.set_image(_rgb_array(image))

    @torch.no_grad()
    def set_image_batch(self, image_list: list[np.ndarray]) -> None:
        """Compute the features of several (H, W, 3) uint8 RGB images (for :meth:`predict_batch`)."""
        self.reset_predictor()
        if not isinstance(image_list, list):
            raise TypeError(f"image_list must be a list of (H, W, 3) uint8 arrays, got {type(image_list).__name__}")
        if not image_list:
            raise ValueError("image_list must hold at least one image")
        for image in image_list:
            if not isinstance(image, np.ndarray):
                raise TypeError(f"set_image_batch takes numpy (H, W, 3) uint8 RGB arrays, got {type(image).__name__}")
        images = [check_image(image, "RGB") for image in image_list]
        self.engine.set_images(images, batch_size=len(images))
        self._is_batch = True

    def get_image_embedding(self) -> torch.Tensor:
        """(B, C, H, W) embeddings of the image(s) set (C = 256, H = W = 64 at 1024)."""
        self._require_image("set_image(...) or set_image_batch(...)", "to get an embedding")
        return self._multiscale().embedding

    def _multiscale(self) -> MultiScaleFeatures:
        features = self.engine.features
        if not isinstance(features, MultiScaleFeatures):
            raise TypeError(f"the encoder {self.engine.encoder!r} did not return SAM 2's MultiScaleFeatures")
        return features

    # ----------------------------------------------------------------- prompts
    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> Prediction:
        """Masks for a prompt, or a batch of B prompts, on the image set (the last one after a batch).

        Args:
            point_coords: (N, 2) or (B, N, 2) (x, y); pixels of the image with ``normalize_coords``,
                else already in [0, 1]. point_labels: (N,) or (B, N), 1 foreground, 0 background.
            box: (4,) or (B, 4) XYXY in the same units.
            mask_input: (1, 256, 256) or (B, 1, 256, 256) low-res logits of a previous prediction.
            multimask_output: three masks per prompt instead of one.
            return_logits: return float logits instead of 0/1 masks.
        Returns:
            masks (C, H, W) float32 (0/1 unless ``return_logits``), scores (C,) float32, low-res
            logits (C, 256, 256) float32; with B > 1 prompts each has a leading B.
        """
        self._require_image("set_image(...)", "before mask prediction")
        mask_input, coords, labels, corners = self._prep_prompts(
            point_coords, point_labels, box, mask_input, normalize_coords
        )
        masks, scores, low_res = self._predict(
            coords, labels, corners, mask_input, multimask_output, return_logits=return_logits
        )
        return _to_numpy(masks), _to_numpy(scores), _to_numpy(low_res)

    def predict_batch(
        self,
        point_coords_batch: Optional[list[np.ndarray]] = None,
        point_labels_batch: Optional[list[np.ndarray]] = None,
        box_batch: Optional[list[np.ndarray]] = None,
        mask_input_batch: Optional[list[np.ndarray]] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """:meth:`predict` on each image of :meth:`set_image_batch`, with that image's entry of each list.

        Returns three lists (masks, scores, low-res logits), one entry per image.
        """
        if not self._is_batch:
            raise ImageNotSetError("predict_batch needs images set with set_image_batch(...)")
        self._require_image("set_image_batch(...)", "before mask prediction")
        count = len(self.engine.original_sizes)
        given = {"point_coords_batch": point_coords_batch, "point_labels_batch": point_labels_batch}
        given.update(box_batch=box_batch, mask_input_batch=mask_input_batch)
        for name, values in given.items():
            if values is not None and len(values) != count:
                raise ValueError(f"{name} must hold one entry per image ({count}), got {len(values)}")
        outputs: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
        for index in range(count):
            prompt = [None if values is None else values[index] for values in given.values()]
            mask_input, coords, labels, corners = self._prep_prompts(*prompt, normalize_coords, img_idx=index)
            result = self._predict(
                coords, labels, corners, mask_input, multimask_output, return_logits=return_logits, img_idx=index
            )
            for output, value in zip(outputs, result):
                output.append(_to_numpy(value))
        return outputs

    def _prep_prompts(
        self,
        point_coords: Any,
        point_labels: Any,
        box: Any,
        mask_logits: Any,
        normalize_coords: bool,
        img_idx: int = -1,
    ) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Checked prompt arrays -> (mask_input (B, 1, S, S), coords (B, N, 2), labels (B, N), box corners
        (B, 2, 2)) tensors on the model's device, coordinates in the encoder's frame."""
        mask_size = self.model.sam_prompt_encoder.mask_input_size[0]
        check_sam2_prompt(point_coords, point_labels, box, mask_logits, mask_size)
        coords = labels = corners = mask_input = None
        orig_hw = self._orig_hw[img_idx]
        if point_coords is not None:
            coords = torch.as_tensor(point_coords, dtype=torch.float, device=self.device)
            coords = self._transforms.transform_coords(coords, normalize=normalize_coords, orig_hw=orig_hw)
            labels = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)
            if coords.dim() == 2:
                coords, labels = coords[None], labels[None]
        if box is not None:
            box = torch.as_tensor(box, dtype=torch.float, device=self.device)
            corners = self._transforms.transform_boxes(box, normalize=normalize_coords, orig_hw=orig_hw)
        if mask_logits is not None:
            mask_input = torch.as_tensor(mask_logits, dtype=torch.float, device=self.device)
            if mask_input.dim() == 3:
                mask_input = mask_input[None]
        return mask_input, coords, labels, corners

    @torch.no_grad()
    def _predict(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        img_idx: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tensor prompts already in the encoder's frame -> (B, C, H, W) masks, (B, C) scores, (B, C, 256, 256)
        clamped low-res logits, on image ``img_idx``.

        Args:
            point_coords: (B, N, 2), point_labels (B, N), boxes (B, 4) or (B, 2, 2), mask_input
                (B or 1, 1, 256, 256); each may be None.
        """
        self._require_image("set_image(...)", "before mask prediction")
        batch = tensor_prompt_batch(point_coords, point_labels, boxes, mask_input, SAM2_RULE)
        image = img_idx % len(self.engine.original_sizes)
        low_res_masks, iou_predictions = self.decoder.decode(
            self.engine.features, batch, [image] * len(batch.labels), multimask_output
        )
        masks = self._full_size(low_res_masks, image, return_logits=True)
        low_res_masks = torch.clamp(low_res_masks, -LOW_RES_LOGIT_CLAMP, LOW_RES_LOGIT_CLAMP)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou_predictions, low_res_masks

    def _full_size(self, low_res: torch.Tensor, image: int, return_logits: bool) -> torch.Tensor:
        """(P, C, h, w) low-res logits of image ``image`` -> (P, C, H, W) float32 logits (bool masks
        without ``return_logits``): the decoder's post-processing."""
        side = self.engine.encoder.img_size
        original_size = self.engine.original_sizes[image]
        return self.decoder.postprocess(low_res, (side, side), original_size, side, self.mask_threshold, return_logits)

    # ------------------------------------------------------------ promptseg additions
    def predict_many(
        self, prompts: Sequence[Mapping[str, Any]], multimask_output: bool = True, return_logits: bool = False
    ) -> Prediction:
        """Masks for P prompts of any shapes on the image set (the last one after a batch), decoded
        ``prompt_batch_size`` at a time (a promptseg addition, as ``SamPredictor.predict_many``).

        Each prompt is a dict with some of ``point_coords`` ((N, 2) pixels of the image),
        ``point_labels`` ((N,) 1 foreground, 0 background), ``box`` ((4,) XYXY pixels) and
        ``mask_input`` ((1, 256, 256) low-res logits); prompts may differ in their number of points,
        box, and mask input. Results equal calling :meth:`predict` once per prompt.

        Returns:
            masks (P, C, H, W) float32 (0/1 unless ``return_logits``), scores (P, C) float32,
            low-res logits (P, C, 256, 256) float32 clamped to +-32; C = 3 or 1.
        """
        self._require_image("set_image(...)", "before mask prediction")
        if isinstance(prompts, (Mapping, Prompt)):
            raise TypeError("predict_many expects a sequence of prompts (dicts), got one prompt; wrap it in a list")
        image = len(self.engine.original_sizes) - 1
        return self._predict_flat([(image, prompt) for prompt in prompts], multimask_output, return_logits)[image]

    def predict_many_batch(
        self,
        prompts_per_image: Sequence[Sequence[Mapping[str, Any]]],
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> list[Prediction]:
        """Masks for prompts on each image of :meth:`set_image_batch`, all decoded together in batches
        of ``prompt_batch_size`` (a promptseg addition, as ``SamPredictor.predict_batch``).

        Args:
            prompts_per_image: one sequence of prompts (as in :meth:`predict_many`) per image.
        Returns:
            One (masks, scores, low-res logits) tuple per image, shaped as in :meth:`predict_many`.
        """
        self._require_image("set_image_batch(...)", "before mask prediction")
        count = len(self.engine.original_sizes)
        if len(prompts_per_image) != count:
            raise ValueError(f"prompts_per_image must hold one sequence of prompts per image ({count}), got {len(prompts_per_image)}")
        flat = []
        for image, prompts in enumerate(prompts_per_image):
            if isinstance(prompts, (Mapping, Prompt)):
                raise TypeError(f"prompts for image {image} must be a sequence of prompts, got one prompt")
            flat.extend((image, prompt) for prompt in prompts)
        return self._predict_flat(flat, multimask_output, return_logits)

    def _predict_flat(
        self, flat: list[tuple[int, Any]], multimask_output: bool, return_logits: bool
    ) -> list[Prediction]:
        """(image, prompt) pairs, listed image by image -> one prediction per image, in the official
        output conventions (float32 masks, low-res logits clamped)."""
        prompts_per_image: list[list[Any]] = [[] for _ in self.engine.original_sizes]
        for image, prompt in flat:
            text = prompt.text if isinstance(prompt, Prompt) else prompt.get("text") if isinstance(prompt, Mapping) else None
            if text is not None:
                raise ValueError("SAM 2 models take no text prompts")
            prompts_per_image[image].append(prompt)
        results = self.engine.predict_batch(prompts_per_image, multimask_output, return_logits=True)
        outputs = []
        for masks, scores, low_res in results:
            if not return_logits:
                masks = masks > self.mask_threshold
            low_res = np.clip(low_res, -LOW_RES_LOGIT_CLAMP, LOW_RES_LOGIT_CLAMP)
            outputs.append((masks.astype(np.float32), scores.astype(np.float32), low_res.astype(np.float32)))
        return outputs

    def _require_image(self, setter: str, purpose: str) -> None:
        if not self._is_image_set:
            raise ImageNotSetError(f"an image must be set with .{setter} {purpose}")


def _rgb_array(image: Any) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array of a numpy image or a PIL image (converted to RGB)."""
    if isinstance(image, Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        return check_image(image, "RGB")
    raise TypeError(f"image must be an (H, W, 3) uint8 RGB numpy array or a PIL image, got {type(image).__name__}")


def _to_numpy(value: torch.Tensor) -> np.ndarray:
    """A prediction tensor as the official numpy output: leading batch of 1 dropped, float32."""
    return value.squeeze(0).float().detach().cpu().numpy()
