"""The SAM 2 image encoder (trunk + FPN neck), under the official
``sam2.modeling.backbones.image_encoder`` path. Names follow the official model."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FpnNeck", "ImageEncoder"]

FUSE_TYPES = ("sum", "avg")


class ImageEncoder(nn.Module):
    """A trunk and a neck: (B, 3, S, S) normalised images -> feature pyramid and its position encodings."""

    def __init__(self, trunk: nn.Module, neck: nn.Module, scalp: int = 0) -> None:
        """
        Args:
            trunk: e.g. :class:`~promptseg.sam2.modeling.backbones.hieradet.Hiera`.
            neck: :class:`FpnNeck` whose ``backbone_channel_list`` is the trunk's ``channel_list``.
            scalp: how many of the lowest-resolution levels to drop from the outputs.
        """
        super().__init__()
        if list(trunk.channel_list) != list(neck.backbone_channel_list):
            raise ValueError(
                f"the trunk's channel_list {list(trunk.channel_list)} must equal the neck's "
                f"backbone_channel_list {list(neck.backbone_channel_list)}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: torch.Tensor) -> dict[str, object]:
        """
        Returns:
            ``backbone_fpn``: list of (B, d_model, h_i, w_i) features, highest resolution first;
            ``vision_pos_enc``: their (B, d_model, h_i, w_i) sine position encodings;
            ``vision_features``: the last (lowest-resolution) kept level.
        """
        features, pos = self.neck(self.trunk(sample))
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}


class FpnNeck(nn.Module):
    """Feature pyramid without output convs: a 1x1 lateral conv per trunk level, and, on the levels in
    ``fpn_top_down_levels``, the next coarser output upsampled x2 and added (or averaged)."""

    def __init__(
        self,
        position_encoding: nn.Module,
        d_model: int,
        backbone_channel_list: Sequence[int],
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        fpn_interp_model: str = "bilinear",
        fuse_type: str = "sum",
        fpn_top_down_levels: Optional[Sequence[int]] = None,
    ) -> None:
        """
        Args:
            position_encoding: module giving the (B, d_model, h, w) encoding of a feature map.
            d_model: output channels of every level.
            backbone_channel_list: trunk widths, lowest resolution first.
            kernel_size, stride, padding: of the lateral convs.
            fpn_interp_model: ``F.interpolate`` mode of the top-down upsampling.
            fuse_type: "sum" or "avg" of lateral and top-down features.
            fpn_top_down_levels: levels (0 = highest resolution) that receive top-down features; None: all.
        """
        super().__init__()
        if fuse_type not in FUSE_TYPES:
            raise ValueError(f"fuse_type must be one of {list(FUSE_TYPES)}, got {fuse_type!r}")
        self.position_encoding = position_encoding
        self.backbone_channel_list = backbone_channel_list
        self.d_model = d_model
        self.convs = nn.ModuleList()
        for channels in backbone_channel_list:
            lateral = nn.Sequential()
            lateral.add_module(
                "conv", nn.Conv2d(channels, d_model, kernel_size=kernel_size, stride=stride, padding=padding)
            )
            self.convs.append(lateral)
        self.fpn_interp_model = fpn_interp_model
        self.fuse_type = fuse_type
        levels = range(len(self.convs)) if fpn_top_down_levels is None else fpn_top_down_levels
        self.fpn_top_down_levels = list(levels)

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Trunk outputs (highest resolution first) -> (features, position encodings), same order."""
        if len(xs) != len(self.convs):
            raise ValueError(f"FpnNeck expects {len(self.convs)} trunk levels, got {len(xs)}")
        last = len(self.convs) - 1
        out: list[torch.Tensor] = [None] * len(xs)  # type: ignore[list-item]
        pos: list[torch.Tensor] = [None] * len(xs)  # type: ignore[list-item]
        previous = None
        for level in range(last, -1, -1):  # coarse to fine
            lateral = self.convs[last - level](xs[level])
            if previous is not None and level in self.fpn_top_down_levels:
                top_down = F.interpolate(
                    previous.to(dtype=torch.float32),
                    scale_factor=2.0,
                    mode=self.fpn_interp_model,
                    align_corners=None if self.fpn_interp_model == "nearest" else False,
                    antialias=False,
                )
                previous = lateral + top_down
                if self.fuse_type == "avg":
                    previous = previous / 2
            else:
                previous = lateral
            out[level] = previous
            pos[level] = self.position_encoding(previous).to(previous.dtype)
        return out, pos
