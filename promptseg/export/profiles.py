"""Shape ranges of the engines: the optimisation profiles for image batch, prompt count and points per prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Shape = tuple[int, ...]
ShapeRange = tuple[Shape, Shape, Shape]
"""(min, opt, max) shape of one engine input."""
Profile = dict[str, ShapeRange]
"""Shape range per input name; one TensorRT optimisation profile."""


@dataclass(frozen=True)
class EngineLimits:
    """The largest (and the most common) call shapes the engines are built for.

    Attributes:
        max_images / opt_images: images per encoder call, and distinct images per
            decoder call.
        max_prompts / opt_prompts: prompts per decoder call.
        max_points / opt_points: tokens per prompt: its points, then its two box
            corners or one padding point (a box with 3 clicks is 5 tokens).
    """

    max_images: int = 4
    opt_images: int = 1
    max_prompts: int = 64
    opt_prompts: int = 16
    max_points: int = 16
    opt_points: int = 2

    @classmethod
    def up_to(cls, max_images: int, max_prompts: int, max_points: int) -> "EngineLimits":
        """Limits with these maxima; the default optima, capped at the maxima."""
        defaults = cls()
        return cls(
            max_images=max_images,
            opt_images=min(defaults.opt_images, max_images),
            max_prompts=max_prompts,
            opt_prompts=min(defaults.opt_prompts, max_prompts),
            max_points=max_points,
            opt_points=min(defaults.opt_points, max_points),
        )

    def __post_init__(self) -> None:
        for name in ("images", "prompts", "points"):
            opt, largest = getattr(self, f"opt_{name}"), getattr(self, f"max_{name}")
            if not (isinstance(opt, int) and isinstance(largest, int) and 1 <= opt <= largest):
                raise ValueError(f"EngineLimits needs 1 <= opt_{name} <= max_{name}, got opt={opt!r}, max={largest!r}")


def encoder_profile(image_size: int, limits: EngineLimits) -> Profile:
    """The encoder's profile: ``images`` (B, 3, S, S) with B from 1 to ``limits.max_images``."""

    def images(batch: int) -> Shape:
        return (batch, 3, image_size, image_size)

    return {"images": (images(1), images(limits.opt_images), images(limits.max_images))}


def decoder_profile(embed_dim: int, embedding_size: int, limits: EngineLimits) -> Profile:
    """The batched decoder's profile (inputs of ``promptseg.export.onnx_decoder.BatchedDecoder``).

    Args:
        embed_dim: channels C of the image embedding (256 for SAM).
        embedding_size: side h of the (C, h, h) embedding; masks are 4h.
    """
    mask_side = 4 * embedding_size
    sizes = (
        (1, 1, 1),
        (limits.opt_images, limits.opt_prompts, limits.opt_points),
        (limits.max_images, limits.max_prompts, limits.max_points),
    )

    def ranges(shape_of: Callable[[int, int, int], Shape]) -> ShapeRange:
        """(min, opt, max) of ``shape_of(images, prompts, points)``."""
        low, opt, high = (shape_of(*size) for size in sizes)
        return low, opt, high

    return {
        "image_embeddings": ranges(lambda b, p, t: (b, embed_dim, embedding_size, embedding_size)),
        "point_coords": ranges(lambda b, p, t: (p, t, 2)),
        "point_labels": ranges(lambda b, p, t: (p, t)),
        "token_mask": ranges(lambda b, p, t: (p, t)),
        "mask_input": ranges(lambda b, p, t: (p, 1, mask_side, mask_side)),
        "has_mask_input": ranges(lambda b, p, t: (p,)),
        "image_index": ranges(lambda b, p, t: (p,)),
    }
