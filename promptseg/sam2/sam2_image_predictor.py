"""``SAM2ImagePredictor`` under the official ``sam2.sam2_image_predictor`` path: embed an image (or a
batch of images) once, then predict masks for many prompts.

The same methods, arguments, attributes (``model``, ``mask_threshold``, ``_features``,
``_orig_hw``, ``_transforms``) and outputs as the official class. A prediction runs one way:
check the prompt (:mod:`promptseg.sam2.prompts`) -> coordinates into the encoder's frame
(:class:`~promptseg.sam2.utils.transforms.SAM2Transforms`) -> prompt encoder (SAM 2's token
rule) -> mask decoder -> post-processing (hole / sprinkle removal, resize, threshold).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
from PIL.Image import Image

from promptseg.errors import ImageNotSetError
from promptseg.prompts.validate import check_image
from promptseg.sam2.modeling.sam2_base import SAM2Base
from promptseg.sam2.prompts import check_sam2_prompt, prompt_batch_size, sam2_point_inputs
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
        **kwargs: Any,
    ) -> None:
        """
        Args:
            sam_model: the SAM 2 model, on the device to run on.
            mask_threshold: logit threshold of the returned binary masks.
            max_hole_area, max_sprinkle_area: fill background regions / clear foreground regions of
                at most this many pixels of the 256x256 low-res masks before resizing (0: off).
            **kwargs: accepted and ignored, as officially.
        """
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
        self.reset_predictor()

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> "SAM2ImagePredictor":
        """A predictor of an official model from the Hugging Face Hub (see :func:`build_sam2_hf`)."""
        from promptseg.sam2.build_sam import build_sam2_hf

        return cls(build_sam2_hf(model_id, **kwargs), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_predictor(self) -> None:
        """Forget the image(s) and their features."""
        self._is_image_set = False
        self._features: Optional[dict[str, Any]] = None
        self._orig_hw: Optional[list[tuple[int, int]]] = None
        self._is_batch = False

    # ------------------------------------------------------------------ images
    @torch.no_grad()
    def set_image(self, image: Union[np.ndarray, Image]) -> None:
        """Compute the features of one image: an (H, W, 3) uint8 RGB array or a PIL image."""
        self.reset_predictor()
        rgb = _rgb_array(image)
        self._orig_hw = [rgb.shape[:2]]
        self._features = self._encode(self._transforms(rgb)[None])
        self._is_image_set = True

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
        self._orig_hw = [image.shape[:2] for image in images]
        self._features = self._encode(self._transforms.forward_batch(images))
        self._is_image_set = True
        self._is_batch = True

    def _encode(self, img_batch: torch.Tensor) -> dict[str, Any]:
        """(B, 3, S, S) normalised images -> {"image_embed": (B, C, S/16, S/16), "high_res_feats": [...]}."""
        images = img_batch.to(device=self.device, dtype=self.model.dtype)
        image_embed, high_res_feats = self.model.encode_image(images)
        return {"image_embed": image_embed, "high_res_feats": high_res_feats}

    def get_image_embedding(self) -> torch.Tensor:
        """(B, C, H, W) embeddings of the image(s) set (C = 256, H = W = 64 at 1024)."""
        self._require_image("set_image(...) or set_image_batch(...)", "to get an embedding")
        return self._features["image_embed"]

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
        count = len(self._features["image_embed"])
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
                (B, 1, 256, 256); each may be None.
        """
        self._require_image("set_image(...)", "before mask prediction")
        points = sam2_point_inputs(point_coords, point_labels, boxes)
        prompt_encoder = self.model.sam_prompt_encoder
        sparse_embeddings, dense_embeddings = prompt_encoder(points=points, boxes=None, masks=mask_input)
        corners = None if boxes is None else boxes.reshape(-1, 2, 2)
        batched = prompt_batch_size(point_coords, corners, mask_input) > 1
        low_res_masks, iou_predictions = self._decode(
            sparse_embeddings, dense_embeddings, multimask_output, batched, img_idx
        )
        masks = self._transforms.postprocess_masks(low_res_masks, self._orig_hw[img_idx])
        low_res_masks = torch.clamp(low_res_masks, -LOW_RES_LOGIT_CLAMP, LOW_RES_LOGIT_CLAMP)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou_predictions, low_res_masks

    def _decode(
        self,
        sparse_embeddings: torch.Tensor,
        dense_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        img_idx: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C) sparse and (B or 1, C, h, w) dense embeddings -> (B, M, 4h, 4w) low-res logits, (B, M) IoU."""
        features = self._features
        high_res_features = [level[img_idx].unsqueeze(0) for level in features["high_res_feats"]]
        low_res_masks, iou_predictions, _, _ = self.model.sam_mask_decoder(
            image_embeddings=features["image_embed"][img_idx].unsqueeze(0),
            image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse_embeddings,
            dense_prompt_embeddings=dense_embeddings,
            multimask_output=multimask_output,
            repeat_image=repeat_image,
            high_res_features=high_res_features,
        )
        return low_res_masks, iou_predictions

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
