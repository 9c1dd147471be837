"""The frames encoders see: resizing images, coordinates and boxes into the encoder's input.

* :class:`ResizeLongestSide` (SAM): the longest image side becomes the input size, the aspect
  ratio is kept, and the encoder pads the rest;
* :class:`SquareResize` (SAM 2): the image is stretched to the square input, no padding.

Both have the same methods (:class:`Frame`), so the predictor, the prompt packing and the mask
generator hold "the encoder's frame" without asking which one it is
(``promptseg.encoders.ImageEncoder.frame``).
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torchvision.transforms import functional as TF


class Frame(Protocol):
    """What a frame offers (see :class:`ResizeLongestSide`, :class:`SquareResize`)."""

    target_length: int

    def apply_image(self, image: np.ndarray) -> np.ndarray: ...

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray: ...

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray: ...

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor: ...

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor: ...

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]: ...


class ResizeLongestSide:
    """Same API and results as ``segment_anything.utils.transforms.ResizeLongestSide``."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) uint8 -> (h, w, C) uint8 with max(h, w) = target_length, resized bilinearly by PIL."""
        height, width = self.get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        return np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """(..., 2) pixel (x, y) in an image of ``original_size`` (H, W) -> float64 in the resized frame."""
        scale_x, scale_y = self._scales(original_size)
        coords = np.array(coords, dtype=float)
        coords[..., 0] *= scale_x
        coords[..., 1] *= scale_y
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """(B, 4) XYXY boxes -> (B, 4) float64 in the resized frame."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float -> (B, C, h, w), antialiased bilinear; may differ slightly from apply_image."""
        target = self.get_preprocess_shape(image.shape[-2], image.shape[-1], self.target_length)
        return F.interpolate(image, target, mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        """(..., 2) tensor of pixel (x, y) -> float32 in the resized frame (a new tensor)."""
        scale_x, scale_y = self._scales(original_size)
        coords = coords.to(torch.float).clone()
        coords[..., 0] *= scale_x
        coords[..., 1] *= scale_y
        return coords

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        """(B, 4) tensor of XYXY boxes -> (B, 4) float32 in the resized frame."""
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def _scales(self, original_size: tuple[int, ...]) -> tuple[float, float]:
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        return new_w / old_w, new_h / old_h

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        """(h, w) after scaling (oldh, oldw) so that the longer side is ``long_side_length``, rounded half up."""
        scale = long_side_length * 1.0 / max(oldh, oldw)
        return int(oldh * scale + 0.5), int(oldw * scale + 0.5)


class SquareResize:
    """SAM 2's frame (``SAM2Transforms``): images stretched to ``target_length`` x ``target_length``.

    Images are resized as the official ``ToTensor`` then ``Resize`` do (on the host, in float32 on
    a 0..1 scale, bilinear with antialiasing); coordinates are divided by the image's width and
    height and multiplied by ``target_length`` in float32, as the official predictor does. With
    ``normalized=True`` coordinates are taken as already in [0, 1] (the official
    ``normalize_coords=False``) and only multiplied.
    """

    def __init__(self, target_length: int, normalized: bool = False) -> None:
        self.target_length = target_length
        self.normalized = normalized

    def resize_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) float 0..1 -> (3, S, S), as torchvision's ``Resize((S, S))``."""
        size = [self.target_length, self.target_length]
        return TF.resize(image, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (S, S, 3) float32 on a 0..1 scale (what the SAM 2 encoder's
        ``preprocess`` normalises)."""
        return self.resize_tensor(TF.to_tensor(image)).permute(1, 2, 0).numpy()

    def apply_coords(self, coords: np.ndarray, original_size: Optional[Sequence[int]]) -> np.ndarray:
        """(..., 2) (x, y) in an image of ``original_size`` (H, W) -> float64 holding the float32
        coordinates of the square frame."""
        scaled = self.apply_coords_torch(torch.as_tensor(np.asarray(coords), dtype=torch.float32), original_size)
        return scaled.numpy().astype(np.float64)

    def apply_boxes(self, boxes: np.ndarray, original_size: Optional[Sequence[int]]) -> np.ndarray:
        """(B, 4) XYXY boxes -> (B, 4) float64 in the frame."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: Optional[Sequence[int]]) -> torch.Tensor:
        """(..., 2) tensor of (x, y) -> float32 in the frame (a new tensor): x / W * S, y / H * S."""
        coords = coords.to(torch.float32).clone()
        if not self.normalized:
            if original_size is None:
                raise ValueError("pixel coordinates need the (H, W) of their image to enter the square frame")
            height, width = original_size
            coords[..., 0] = coords[..., 0] / width
            coords[..., 1] = coords[..., 1] / height
        return coords * self.target_length

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: Optional[Sequence[int]]) -> torch.Tensor:
        """(B, 4) tensor of XYXY boxes -> (B, 4) float32 in the frame."""
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        """(S, S): every image fills the square frame."""
        return long_side_length, long_side_length
