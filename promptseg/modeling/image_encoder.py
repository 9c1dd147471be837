"""The ViT image encoder: patch embedding, windowed/global attention blocks, and the neck.

Module and parameter names follow the official ``segment_anything`` model so that
official checkpoints load unchanged. The attention math itself lives behind
:func:`promptseg.ops.vit_attention`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from promptseg.modeling.common import LayerNorm, LayerNorm2d, MLPBlock
from promptseg.ops import partition_windows, rel_pos_table, unpartition_windows, vit_attention


class ImageEncoderViT(nn.Module):
    """(B, 3, S, S) normalised, padded images -> (B, out_chans, S/patch, S/patch) embeddings.

    ``engine`` (a promptseg addition) is what a ``SamPredictor`` made without ``encoder=`` embeds
    images with on the CPU: None (this module; a model not built by ``build_sam``), or what
    ``build_sam(engine=...)`` recorded (see :mod:`promptseg.encoders.auto`). It changes no weight.
    """

    engine: Optional[str] = None

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        norm_layer: type[nn.Module] = LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        use_abs_pos: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        global_attn_indexes: tuple[int, ...] = (),
    ) -> None:
        """
        Args:
            img_size: side of the square input image.
            patch_size: side of a patch; the token grid is img_size // patch_size.
            embed_dim, depth, num_heads, mlp_ratio: ViT width, number of blocks, heads, MLP ratio.
            out_chans: channels of the output embedding.
            norm_layer, act_layer: normalisation and activation classes of the blocks.
            use_abs_pos: add a learned absolute position embedding.
            use_rel_pos: add the decomposed relative position bias in attention.
            window_size: window side of the windowed blocks.
            global_attn_indexes: indexes of the blocks that attend globally.
        """
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(
            kernel_size=(patch_size, patch_size),
            stride=(patch_size, patch_size),
            in_chans=in_chans,
            embed_dim=embed_dim,
        )
        self.pos_embed: Optional[nn.Parameter] = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                norm_layer=norm_layer,
                act_layer=act_layer,
                use_rel_pos=use_rel_pos,
                rel_pos_zero_init=rel_pos_zero_init,
                window_size=0 if index in global_attn_indexes else window_size,
                input_size=(grid, grid),
            )
            for index in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


class Block(nn.Module):
    """Pre-norm transformer block on a (B, H, W, C) grid; windowed when window_size > 0."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_layer: type[nn.Module] = LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        input_size: Optional[tuple[int, int]] = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            rel_pos_zero_init=rel_pos_zero_init,
            input_size=input_size if window_size == 0 else (window_size, window_size),
            window_size=window_size,
        )
        self.norm2 = norm_layer(dim)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=act_layer)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Attention(nn.Module):
    """Multi-head self-attention with the decomposed relative position bias.

    ``window_size`` (a promptseg addition; 0 = global) tells the op to attend
    inside non-overlapping windows of the grid. The padding of the grid to a
    multiple of the window behaves exactly as zero tokens fed to ``qkv``.
    ``backend`` is handed to the op (see :func:`promptseg.ops.set_backend`).
    """

    backend: str = "auto"

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        input_size: Optional[tuple[int, int]] = None,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        self.window_size = window_size
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size must be given when use_rel_pos is True")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))
            if not rel_pos_zero_init:
                nn.init.trunc_normal_(self.rel_pos_h, std=0.02)
                nn.init.trunc_normal_(self.rel_pos_w, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        rel_pos_h = self.rel_pos_h if self.use_rel_pos else None
        rel_pos_w = self.rel_pos_w if self.use_rel_pos else None
        out = vit_attention(
            self.qkv(x), self.num_heads, rel_pos_h, rel_pos_w, self.window_size, self.qkv.bias, backend=self.backend
        )
        return self.proj(out)


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B, C, H, W) -> (B, H/p, W/p, embed_dim)."""

    def __init__(
        self,
        kernel_size: tuple[int, int] = (16, 16),
        stride: tuple[int, int] = (16, 16),
        padding: tuple[int, int] = (0, 0),
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


# The official module's functions, over the ops the attention above runs on (Attention
# itself calls promptseg.ops.vit_attention and never these).


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) grid -> (B * nH * nW, ws, ws, C) windows and the padded size (Hp, Wp).

    The grid is zero-padded at the bottom and right to multiples of ``window_size``.
    """
    return partition_windows(x, window_size)


def window_unpartition(
    windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """(B * nH * nW, ws, ws, C) windows of a (Hp, Wp) = ``pad_hw`` grid -> (B, H, W, C), padding dropped."""
    return unpartition_windows(windows, window_size, pad_hw, hw)


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """(L, C) relative position table -> (q_size, k_size, C) embeddings of each (query, key) offset.

    The table is linearly resized to 2 * max(q_size, k_size) - 1 rows when it has another length.
    """
    return rel_pos_table(q_size, k_size, rel_pos)


def add_decomposed_rel_pos(
    attn: torch.Tensor,
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> torch.Tensor:
    """Add the decomposed relative position bias (MViTv2) to attention logits.

    Args:
        attn: (B, q_h * q_w, k_h * k_w) attention logits.
        q: (B, q_h * q_w, C) queries (unscaled), row-major over the (q_h, q_w) = ``q_size`` grid.
        rel_pos_h, rel_pos_w: (Lh, C) and (Lw, C) tables of the height and width axes.
        k_size: (k_h, k_w) of the key grid.
    Returns:
        (B, q_h * q_w, k_h * k_w): attn[b, (y, x), (ky, kx)] + q . Rh[y, ky] + q . Rw[x, kx].
    """
    (q_h, q_w), (k_h, k_w) = q_size, k_size
    q_grid = q.reshape(q.shape[0], q_h, q_w, q.shape[-1])
    rel_h = torch.einsum("bhwc,hkc->bhwk", q_grid, get_rel_pos(q_h, k_h, rel_pos_h))
    rel_w = torch.einsum("bhwc,wkc->bhwk", q_grid, get_rel_pos(q_w, k_w, rel_pos_w))
    biased = attn.view(q.shape[0], q_h, q_w, k_h, k_w) + rel_h[..., :, None] + rel_w[..., None, :]
    return biased.view(q.shape[0], q_h * q_w, k_h * k_w)
