"""Hiera, the hierarchical image trunk of SAM 2, under the official ``sam2.modeling.backbones.hieradet`` path.

Four stages of transformer blocks on a (B, H, W, C) token grid. The first block of stages 2..4
halves the grid by max-pooling its queries (and the skip path) and doubles the width and the
heads; blocks attend inside non-overlapping windows, except the few listed as global. Position
is a background embedding resized bicubically to the grid plus a window-sized embedding tiled
over it. Module and parameter names follow the official model, so its checkpoints load unchanged.
Attention is ``torch.nn.functional.scaled_dot_product_attention`` (flash attention on GPUs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

from promptseg.sam2.modeling.backbones.utils import PatchEmbed, window_partition, window_unpartition
from promptseg.sam2.modeling.sam2_utils import MLP, DropPath

__all__ = ["Hiera", "MultiScaleAttention", "MultiScaleBlock", "do_pool"]

logger = logging.getLogger(__name__)


def do_pool(x: torch.Tensor, pool: Optional[nn.Module], norm: Optional[nn.Module] = None) -> torch.Tensor:
    """Apply a 2-D ``pool`` (then ``norm``) to a (B, H, W, C) grid: -> (B, H', W', C); identity without a pool."""
    if pool is None:
        return x
    pooled = pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return norm(pooled) if norm else pooled


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries may be pooled: (B, H, W, dim) -> (B, H', W', dim_out)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        # (B, H*W, 3, heads, head_dim) -> three (B, H*W, heads, head_dim)
        q, k, v = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1).unbind(2)
        if self.q_pool is not None:
            q = do_pool(q.reshape(batch, height, width, -1), self.q_pool)
            height, width = q.shape[1], q.shape[2]
            q = q.reshape(batch, height * width, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))


class MultiScaleBlock(nn.Module):
    """Pre-norm Hiera block on a (B, H, W, dim) grid -> (B, H', W', dim_out).

    ``window_size`` > 0 attends inside windows of that side (0: globally); ``q_stride``
    pools the queries and the skip path, which then goes through ``proj`` when the width changes.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        norm_layer: Union[type[nn.Module], str] = "LayerNorm",
        q_stride: Optional[tuple[int, int]] = None,
        act_layer: type[nn.Module] = nn.GELU,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(norm_layer, str):
            norm_layer = partial(getattr(nn, norm_layer), eps=1e-6)
        self.dim = dim
        self.dim_out = dim_out
        self.norm1 = norm_layer(dim)
        self.window_size = window_size
        self.q_stride = q_stride
        self.pool = nn.MaxPool2d(kernel_size=q_stride, stride=q_stride, ceil_mode=False) if q_stride else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads=num_heads, q_pool=self.pool)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim_out)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=act_layer)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = do_pool(self.proj(x), self.pool)
        if self.window_size > 0:
            x, _ = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            # Pooled queries shrink every window by the stride; the windows tile the pooled grid.
            window = self.window_size // self.q_stride[0] if self.q_stride else self.window_size
            height, width = shortcut.shape[1], shortcut.shape[2]
            # (ceil division written with non-negative operands, which exports to ONNX's Div unchanged)
            padded = ((height + window - 1) // window * window, (width + window - 1) // window * window)
            x = window_unpartition(x, window, padded, (height, width))
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


@dataclass(frozen=True)
class _BlockSpec:
    dim: int
    dim_out: int
    num_heads: int
    window_size: int
    pooled: bool


def _block_specs(
    embed_dim: int,
    num_heads: int,
    stages: tuple[int, ...],
    q_pool: int,
    dim_mul: float,
    head_mul: float,
    window_spec: tuple[int, ...],
    global_att_blocks: Optional[tuple[int, ...]],
) -> list[_BlockSpec]:
    """Width, heads, window and pooling of every block.

    The first block of a stage widens to the stage's width and (for the first ``q_pool`` stage
    changes) pools; its window is still the previous stage's, so the pooled windows tile the
    smaller grid.
    """
    stage_ends = [sum(stages[: index + 1]) - 1 for index in range(len(stages))]
    pooled_blocks = {end + 1 for end in stage_ends[:-1][:q_pool]}
    specs, stage = [], 0
    for index in range(sum(stages)):
        window = window_spec[stage]
        if global_att_blocks is not None and index in global_att_blocks:
            window = 0
        dim_out = embed_dim
        if index - 1 in stage_ends:
            dim_out = int(embed_dim * dim_mul)
            num_heads = int(num_heads * head_mul)
            stage += 1
        specs.append(_BlockSpec(embed_dim, dim_out, num_heads, window, index in pooled_blocks))
        embed_dim = dim_out
    return specs


class Hiera(nn.Module):
    """(B, 3, S, S) normalised images -> the last block's output of every stage, highest resolution first.

    With ``return_interm_layers`` the outputs are (B, C_i, S/4/2**i, S/4/2**i) for stages i = 0..3
    (``channel_list`` lists their widths lowest resolution first); else only the last stage's.
    """

    def __init__(
        self,
        embed_dim: int = 96,
        num_heads: int = 1,
        drop_path_rate: float = 0.0,
        q_pool: int = 3,
        q_stride: tuple[int, int] = (2, 2),
        stages: tuple[int, ...] = (2, 3, 16, 3),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14),
        window_spec: tuple[int, ...] = (8, 4, 14, 7),
        global_att_blocks: Optional[tuple[int, ...]] = (12, 16, 20),
        weights_path: Optional[str] = None,
        return_interm_layers: bool = True,
    ) -> None:
        """
        Args:
            embed_dim, num_heads: width and heads of the first stage.
            drop_path_rate: stochastic depth of the last block (linear from 0).
            q_pool: how many stage changes pool the grid by ``q_stride``.
            stages: blocks per stage.
            dim_mul, head_mul: width and heads factors at each stage change.
            window_pos_embed_bkg_spatial_size: (h, w) of the background position embedding.
            window_spec: window side per stage.
            global_att_blocks: indices of the blocks that attend globally.
            weights_path: a trunk checkpoint to load (non-strictly), or None.
            return_interm_layers: return every stage's output, not only the last.
        """
        super().__init__()
        if len(stages) != len(window_spec):
            raise ValueError(f"stages and window_spec need one entry per stage, got {stages} and {window_spec}")
        if not 0 <= q_pool <= len(stages) - 1:
            raise ValueError(f"q_pool must be in [0, {len(stages) - 1}] for {len(stages)} stages, got {q_pool}")
        self.window_spec = window_spec
        self.q_stride = q_stride
        self.stage_ends = [sum(stages[: index + 1]) - 1 for index in range(len(stages))]
        self.q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][:q_pool]
        self.return_interm_layers = return_interm_layers
        self.patch_embed = PatchEmbed(embed_dim=embed_dim)
        self.global_att_blocks = global_att_blocks
        self.window_pos_embed_bkg_spatial_size = window_pos_embed_bkg_spatial_size
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, window_spec[0], window_spec[0]))

        specs = _block_specs(embed_dim, num_heads, stages, q_pool, dim_mul, head_mul, window_spec, global_att_blocks)
        # (zeros without stochastic depth, read off no tensor: the model also builds on meta / fake devices)
        drop_rates = torch.linspace(0, drop_path_rate, len(specs)).tolist() if drop_path_rate > 0 else [0.0] * len(specs)
        self.blocks = nn.ModuleList(
            MultiScaleBlock(
                dim=spec.dim,
                dim_out=spec.dim_out,
                num_heads=spec.num_heads,
                drop_path=rate,
                q_stride=q_stride if spec.pooled else None,
                window_size=spec.window_size,
            )
            for spec, rate in zip(specs, drop_rates)
        )
        ends = self.stage_ends[::-1] if return_interm_layers else self.stage_ends[-1:]
        self.channel_list = [self.blocks[end].dim_out for end in ends]
        if weights_path is not None:
            from promptseg.checkpoint import read_state_dict  # only for this rarely used option

            result = self.load_state_dict(read_state_dict(weights_path), strict=False)
            logger.info("loaded the Hiera trunk from %s: %s", weights_path, result)

    def _get_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """(1, h, w, C) position embedding of an (h, w) grid: the resized background plus the tiled window."""
        background = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        window = self.pos_embed_window
        tiles = [whole // part for whole, part in zip(background.shape, window.shape)]
        return (background + window.tile(tiles)).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._get_pos_embed(x.shape[1:3])
        outputs = []
        last = self.stage_ends[-1]
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == last or (self.return_interm_layers and index in self.stage_ends):
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs

    def get_layer_id(self, layer_name: str) -> int:
        """Depth of a parameter for layer-wise learning-rate decay: 0 for the embeddings, i + 1 in block i."""
        num_layers = self.get_num_layers()
        if "rel_pos" in layer_name:
            return num_layers + 1
        if "pos_embed" in layer_name or "patch_embed" in layer_name:
            return 0
        if "blocks" in layer_name:
            return int(layer_name.split("blocks")[1].split(".")[1]) + 1
        return num_layers + 1

    def get_num_layers(self) -> int:
        return len(self.blocks)
