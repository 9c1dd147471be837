"""``SAM2Transforms`` under the official ``sam2.utils.transforms`` path: the frame the SAM 2 encoder sees.

Unlike SAM 1 there is no padding: an image is resized to ``resolution`` x ``resolution`` (bilinear,
antialiased, aspect ratio not kept) and normalised with the ImageNet mean and std on a 0..1 scale.
Prompt coordinates scale with the image, and low-res mask logits are resized straight to the
original size.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import functional as TF

from promptseg.amg.regions import fill_small_holes

__all__ = ["SAM2Transforms", "small_component_pixels"]

# What a filled hole or a removed sprinkle gets, relative to the mask threshold (the official values).
HOLE_LOGIT_OFFSET = 10.0


class SAM2Transforms(nn.Module):
    """Image, prompt and mask transforms between an original image and the encoder's square frame."""

    def __init__(
        self, resolution: int, mask_threshold: float, max_hole_area: float = 0.0, max_sprinkle_area: float = 0.0
    ) -> None:
        """
        Args:
            resolution: side of the encoder's input.
            mask_threshold: logit threshold of a mask.
            max_hole_area, max_sprinkle_area: in :meth:`postprocess_masks`, background regions
                (holes) and foreground regions (sprinkles) of at most this many low-res pixels
                are flipped; 0 turns each off.
        """
        super().__init__()
        self.resolution = resolution
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self.mean = [0.485, 0.456, 0.406]
        self.std = [0.229, 0.224, 0.225]

    def __call__(self, x: Any) -> torch.Tensor:
        """An (H, W, 3) uint8 array or a PIL image -> (3, resolution, resolution) float32 normalised."""
        return self._resize_normalize(TF.to_tensor(x))

    def forward_batch(self, img_list: Sequence[np.ndarray]) -> torch.Tensor:
        """Images -> (B, 3, resolution, resolution)."""
        return torch.stack([self(image) for image in img_list], dim=0)

    def _resize_normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) float 0..1 -> (3, resolution, resolution) normalised."""
        size = [self.resolution, self.resolution]
        resized = TF.resize(image, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        return TF.normalize(resized, self.mean, self.std)

    def transform_coords(
        self, coords: torch.Tensor, normalize: bool = False, orig_hw: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        """(..., 2) (x, y) -> the encoder's frame (a new tensor).

        With ``normalize`` the coordinates are pixels of an image of ``orig_hw`` (H, W); without,
        they are already in [0, 1].
        """
        if normalize:
            if orig_hw is None:
                raise ValueError("transform_coords(normalize=True) needs orig_hw, the (H, W) of the image")
            height, width = orig_hw
            coords = coords.clone()
            coords[..., 0] = coords[..., 0] / width
            coords[..., 1] = coords[..., 1] / height
        return coords * self.resolution

    def transform_boxes(
        self, boxes: torch.Tensor, normalize: bool = False, orig_hw: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        """(B, 4) XYXY boxes -> (B, 2, 2) corners in the encoder's frame."""
        return self.transform_coords(boxes.reshape(-1, 2, 2), normalize, orig_hw)

    def postprocess_masks(self, masks: torch.Tensor, orig_hw: Sequence[int]) -> torch.Tensor:
        """(B, M, h, w) low-res logits -> (B, M, H, W) float32 logits at the original (H, W) = ``orig_hw``.

        Small holes (background regions of at most ``max_hole_area`` pixels, 8-connected) are set to
        threshold + 10 and small sprinkles (foreground regions of at most ``max_sprinkle_area``) to
        threshold - 10 on the low-res logits first; then they are resized bilinearly.
        """
        masks = masks.float()
        foreground = (masks > self.mask_threshold).flatten(0, 1)
        if self.max_hole_area > 0:
            holes = small_component_pixels(~foreground, self.max_hole_area).reshape_as(masks)
            masks = torch.where(holes, self.mask_threshold + HOLE_LOGIT_OFFSET, masks)
        if self.max_sprinkle_area > 0:
            sprinkles = small_component_pixels(foreground, self.max_sprinkle_area).reshape_as(masks)
            masks = torch.where(sprinkles, self.mask_threshold - HOLE_LOGIT_OFFSET, masks)
        return F.interpolate(masks, tuple(orig_hw), mode="bilinear", align_corners=False)


def small_component_pixels(regions: torch.Tensor, max_area: float) -> torch.Tensor:
    """(N, H, W) bool -> (N, H, W) bool: the pixels of 8-connected regions of at most ``max_area`` pixels."""
    regions = regions.contiguous()
    with_small = fill_small_holes(~regions, math.floor(max_area) + 1)[0]
    return with_small & regions
