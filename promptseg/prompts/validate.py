"""Validation of user input: images and prompts. Every check raises TypeError or ValueError
naming what was expected and what was given; nothing passed in is modified.

:func:`check_prompt_in_image` is the one rule for whether points and boxes lie on the image, with
one message: the command line (``promptseg predict``) and the annotation API (a 400) both call it.
The Python API (``SamPredictor.predict``) takes any finite coordinates, as the official one does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import torch

from promptseg.prompts.tokens import TOKEN_LABELS

IMAGE_FORMATS = ("RGB", "BGR")
PROMPT_KEYS = ("point_coords", "point_labels", "box", "mask_input", "text")


@dataclass(frozen=True)
class Prompt:
    """One validated prompt in the pixel frame of the original image.

    Attributes:
        point_coords: (N, 2) float64 (x, y), or None.
        point_labels: (N,) int64 in {0, 1}, or None (exactly when point_coords is None).
        box: (4,) float64 XYXY with x0 <= x1 and y0 <= y1, or None.
        mask_input: (1, S, S) float32 low-resolution logits, or None.
        text: a non-empty phrase naming the object ("red ellipse"), or None.
    """

    point_coords: Optional[np.ndarray] = None
    point_labels: Optional[np.ndarray] = None
    box: Optional[np.ndarray] = None
    mask_input: Optional[np.ndarray] = None
    text: Optional[str] = None

    @property
    def num_points(self) -> int:
        return 0 if self.point_coords is None else len(self.point_coords)


def check_image(image: Any, image_format: str) -> np.ndarray:
    """Validate an (H, W, 3) uint8 image and return it as RGB (a view or copy; the input is untouched)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {list(IMAGE_FORMATS)}, got {image_format!r}")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array of shape (H, W, 3) and dtype uint8, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must have dtype uint8 with values in [0, 255], got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    return image[..., ::-1] if image_format == "BGR" else image


def check_prompt(
    point_coords: Any = None,
    point_labels: Any = None,
    box: Any = None,
    mask_input: Any = None,
    mask_size: int = 256,
    text: Any = None,
) -> Prompt:
    """Validate the prompt arguments of ``SamPredictor.predict`` and return them as a :class:`Prompt`."""
    coords = labels = None
    if point_coords is not None or point_labels is not None:
        if point_coords is None:
            raise ValueError("point_labels was given without point_coords")
        if point_labels is None:
            raise ValueError("point_coords was given without point_labels; pass one label (0 or 1) per point")
        coords = _numeric_array("point_coords", point_coords)
        if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] == 0:
            raise ValueError(f"point_coords must have shape (N, 2) with N >= 1, got {coords.shape}")
        _check_finite("point_coords", coords)
        labels = _numeric_array("point_labels", point_labels)
        if labels.ndim != 1 or labels.shape[0] != coords.shape[0]:
            raise ValueError(
                f"point_labels must have shape (N,) matching the {coords.shape[0]} points, got {labels.shape}"
            )
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"point_labels must be 0 (background) or 1 (foreground), got {np.unique(labels).tolist()}")
        coords, labels = coords.astype(np.float64), labels.astype(np.int64)
    checked_box = None
    if box is not None:
        checked_box = _numeric_array("box", box)
        if checked_box.size != 4:
            raise ValueError(f"box must hold 4 numbers (x0, y0, x1, y1), got shape {checked_box.shape}")
        checked_box = checked_box.reshape(4).astype(np.float64)
        _check_finite("box", checked_box)
        x0, y0, x1, y1 = checked_box
        if x1 < x0 or y1 < y0:
            raise ValueError(f"box must satisfy x0 <= x1 and y0 <= y1 (XYXY), got {checked_box.tolist()}")
    checked_mask = None
    if mask_input is not None:
        checked_mask = _numeric_array("mask_input", mask_input)
        if checked_mask.shape != (1, mask_size, mask_size):
            raise ValueError(
                f"mask_input must have shape (1, {mask_size}, {mask_size}) (low-res logits from a previous "
                f"prediction), got {checked_mask.shape}"
            )
        _check_finite("mask_input", checked_mask)
        checked_mask = checked_mask.astype(np.float32)
    return Prompt(coords, labels, checked_box, checked_mask, None if text is None else check_text(text))


def check_inside_image(name: str, x: float, y: float, width: int, height: int) -> None:
    """Raise ValueError unless the point (x, y) lies on a ``width`` x ``height`` image: 0 <= x <= W and
    0 <= y <= H (the far edges included), naming the point as ``name``."""
    if not (0 <= x <= width and 0 <= y <= height):
        raise ValueError(
            f"{name} = ({_number(x)}, {_number(y)}) is outside the image (0..{width}, 0..{height} pixels)"
        )


def check_prompt_in_image(points: Any, box: Any, width: int, height: int) -> None:
    """Raise ValueError unless every point and both corners of the box lie on a ``width`` x ``height`` image.

    Args:
        points: (N, 2) (x, y) in pixels of the original image, or None.
        box: (4,) XYXY in pixels, or None.
        width, height: the image's size.
    Raises:
        ValueError: ``points[i] = (x, y) is outside the image (0..W, 0..H pixels)``, or the same of
            ``box corner (x0, y0)`` / ``box corner (x1, y1)``.
    """
    for index, (x, y) in enumerate([] if points is None else np.asarray(points).reshape(-1, 2).tolist()):
        check_inside_image(f"points[{index}]", x, y, width, height)
    if box is not None:
        x0, y0, x1, y1 = np.asarray(box).reshape(4).tolist()
        check_inside_image("box corner (x0, y0)", x0, y0, width, height)
        check_inside_image("box corner (x1, y1)", x1, y1, width, height)


def _number(value: float) -> str:
    """A coordinate as typed: 12 for 12 and 12.0, 12.5 for 12.5."""
    if isinstance(value, (int, np.integer)) or (float(value).is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(float(value))


def check_text(text: Any) -> str:
    """Validate one text prompt: a string with at least one non-space character (returned as given)."""
    if isinstance(text, (list, tuple)) or (isinstance(text, np.ndarray) and text.ndim > 0):
        raise TypeError(
            f"text must be one string per prompt, got a {type(text).__name__} of {len(text)}; for several "
            "phrases pass one prompt each, e.g. predict_many([{'text': 'red ellipse'}, {'text': 'blue star'}])"
        )
    if not isinstance(text, str):
        raise TypeError(f"text must be a string such as 'red ellipse', got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"text must name something, got an empty or blank string {text!r}")
    return text


def check_prompt_mapping(prompt: Any, mask_size: int) -> Prompt:
    """Validate one prompt of a batch: a :class:`Prompt` or a mapping with :data:`PROMPT_KEYS`."""
    if isinstance(prompt, Prompt):
        fields = {key: getattr(prompt, key) for key in PROMPT_KEYS}
    elif isinstance(prompt, Mapping):
        unknown = sorted(set(prompt) - set(PROMPT_KEYS))
        if unknown:
            raise ValueError(f"unknown prompt keys {unknown}; expected some of {list(PROMPT_KEYS)}")
        fields = dict(prompt)
    elif isinstance(prompt, str):
        raise TypeError(
            f"each prompt must be a dict with keys from {list(PROMPT_KEYS)}, got the string {prompt!r}; "
            f"write {{'text': {prompt!r}}}"
        )
    else:
        raise TypeError(f"each prompt must be a dict with keys from {list(PROMPT_KEYS)}, got {type(prompt).__name__}")
    return check_prompt(**fields, mask_size=mask_size)


def check_prompt_tensors(
    point_coords: Optional[torch.Tensor],
    point_labels: Optional[torch.Tensor],
    boxes: Optional[torch.Tensor],
    mask_input: Optional[torch.Tensor],
    mask_size: int,
) -> None:
    """Validate the batched tensor prompts of ``SamPredictor.predict_torch`` (already in the resized frame)."""
    batch_sizes = {}
    if point_coords is not None or point_labels is not None:
        if point_coords is None or point_labels is None:
            raise ValueError("point_coords and point_labels must be given together")
        _check_tensor("point_coords", point_coords)
        _check_tensor("point_labels", point_labels)
        if point_coords.dim() != 3 or point_coords.shape[2] != 2:
            raise ValueError(f"point_coords must have shape (B, N, 2), got {tuple(point_coords.shape)}")
        if point_labels.shape != point_coords.shape[:2]:
            raise ValueError(
                f"point_labels must have shape {tuple(point_coords.shape[:2])} to match point_coords, "
                f"got {tuple(point_labels.shape)}"
            )
        _check_finite_tensor("point_coords", point_coords)
        if not torch.isin(point_labels, torch.tensor(TOKEN_LABELS, device=point_labels.device)).all():
            raise ValueError(f"point_labels must be in {list(TOKEN_LABELS)}, got {point_labels.unique().tolist()}")
        batch_sizes["point_coords"] = point_coords.shape[0]
    if boxes is not None:
        _check_tensor("boxes", boxes)
        if boxes.shape[-1] != 4 or boxes.numel() == 0 or boxes.numel() // 4 != boxes.shape[0]:
            raise ValueError(f"boxes must have shape (B, 4), got {tuple(boxes.shape)}")
        _check_finite_tensor("boxes", boxes)
        flat = boxes.reshape(-1, 4)
        if (flat[:, 2] < flat[:, 0]).any() or (flat[:, 3] < flat[:, 1]).any():
            raise ValueError("boxes must satisfy x0 <= x1 and y0 <= y1 (XYXY)")
        batch_sizes["boxes"] = boxes.shape[0]
    if mask_input is not None:
        _check_tensor("mask_input", mask_input)
        if mask_input.dim() != 4 or mask_input.shape[1:] != (1, mask_size, mask_size):
            raise ValueError(f"mask_input must have shape (B, 1, {mask_size}, {mask_size}), got {tuple(mask_input.shape)}")
        _check_finite_tensor("mask_input", mask_input)
        batch_sizes["mask_input"] = mask_input.shape[0]
    if len(set(batch_sizes.values())) > 1:
        raise ValueError(f"prompt batch sizes differ: {batch_sizes}")


def finite_numbers(name: str, value: Any) -> np.ndarray:
    """``value`` (array-like or a tensor) as a numpy array of finite numbers (a view where possible).

    Raises:
        TypeError: ``value`` does not hold numbers; ValueError: it holds NaN or inf. Both name ``name``.
    """
    array = _numeric_array(name, value)
    _check_finite(name, array)
    return array


def _numeric_array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be array-like of numbers, got {type(value).__name__}") from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array


def _check_finite(name: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got NaN or inf in {array.tolist() if array.size <= 16 else name}")


def _check_tensor(name: str, value: Any) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def _check_finite_tensor(name: str, tensor: torch.Tensor) -> None:
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite, got NaN or inf")
