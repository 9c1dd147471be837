"""Architecture configurations: the one source of truth for model sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamConfig:
    """Hyper-parameters of a SAM-architecture model.

    ``image_size // patch_size`` is the side of the image embedding grid; the
    low-resolution masks are 4x that side.
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    @property
    def embedding_size(self) -> int:
        """Side of the (prompt_embed_dim, side, side) image embedding."""
        return self.image_size // self.patch_size

    @property
    def low_res_mask_size(self) -> int:
        """Side of the low-resolution mask logits and of ``mask_input``."""
        return 4 * self.embedding_size


VIT_H = SamConfig(1280, 32, 16, (7, 15, 23, 31))
VIT_L = SamConfig(1024, 24, 16, (5, 11, 17, 23))
VIT_B = SamConfig(768, 12, 12, (2, 5, 8, 11))

# A small SAM for 256x256 images (32x32 embedding, 128x128 masks); the bundled model uses it.
VIT_TINY = SamConfig(
    encoder_embed_dim=192,
    encoder_depth=6,
    encoder_num_heads=3,
    encoder_global_attn_indexes=(2, 5),
    image_size=256,
    patch_size=8,
    window_size=8,
    prompt_embed_dim=128,
    decoder_mlp_dim=1024,
    iou_head_hidden_dim=128,
)

CONFIGS: dict[str, SamConfig] = {"vit_h": VIT_H, "vit_l": VIT_L, "vit_b": VIT_B, "vit_tiny": VIT_TINY}
"""Model types by name. ``default`` is an alias of ``vit_h``, as in the official registry."""

ALIASES: dict[str, str] = {"default": "vit_h"}
