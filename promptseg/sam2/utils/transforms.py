"""``SAM2Transforms`` under the official ``sam2.utils.transforms`` path: the frame the SAM 2 encoder sees.

Unlike SAM 1 there is no padding: an image is resized to ``resolution`` x ``resolution`` (bilinear,
antialiased, aspect ratio not kept) and normalised with the ImageNet mean and std on a 0..1 scale.
Prompt coordinates scale with the image, and low-res mask logits are resized straight to the
original size.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torchvision.transforms import functional as TF

from promptseg.amg.regions import HOLE_LOGIT_OFFSET, RegionCleanup
from promptseg.decoders.sam2 import upscale_sam2_logits
from promptseg.encoders.sam2 import PIXEL_MEAN, PIXEL_STD, normalize_unit_rgb
from promptseg.prompts.frames import SquareResize

__all__ = ["HOLE_LOGIT_OFFSET", "SAM2Transforms"]


class SAM2Transforms(nn.Module):
    """Image, prompt and mask transforms between an original image and the encoder's square frame.

    The arithmetic is promptseg's one copy of it: the frame :class:`~promptseg.prompts.frames.SquareResize`,
    the normalisation :func:`promptseg.encoders.sam2.normalize_unit_rgb` and the post-processing
    :func:`promptseg.decoders.sam2.upscale_sam2_logits`, which the predictor's seams run too.
    """

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
        self.mean = list(PIXEL_MEAN)
        self.std = list(PIXEL_STD)

    def __call__(self, x: Any) -> torch.Tensor:
        """An (H, W, 3) uint8 array or a PIL image -> (3, resolution, resolution) float32 normalised."""
        return normalize_unit_rgb(SquareResize(self.resolution).resize_tensor(TF.to_tensor(x)))

    def forward_batch(self, img_list: Sequence[np.ndarray]) -> torch.Tensor:
        """Images -> (B, 3, resolution, resolution)."""
        return torch.stack([self(image) for image in img_list], dim=0)

    def transform_coords(
        self, coords: torch.Tensor, normalize: bool = False, orig_hw: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        """(..., 2) (x, y) -> float32 in the encoder's frame (a new tensor).

        With ``normalize`` the coordinates are pixels of an image of ``orig_hw`` (H, W); without,
        they are already in [0, 1].
        """
        if normalize and orig_hw is None:
            raise ValueError("transform_coords(normalize=True) needs orig_hw, the (H, W) of the image")
        return SquareResize(self.resolution, normalized=not normalize).apply_coords_torch(coords, orig_hw)

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
        cleanup = RegionCleanup(self.mask_threshold, self.max_hole_area, self.max_sprinkle_area)
        return upscale_sam2_logits(masks, orig_hw, cleanup)
