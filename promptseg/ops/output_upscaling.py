"""The mask decoder's output head: image tokens -> upscaled features -> one low-res mask per mask token.

SAM's ``output_upscaling`` is two 2x2, stride-2 transposed convolutions, a ``LayerNorm2d`` and an
activation after the first, an activation after the second (SAM 2 adds its high-res features
after each convolution); the masks are then each mask token's hypernetwork weights times the
upscaled features. :func:`upscaled_mask_logits_reference` runs that as the model's modules do.

On the CPU (float32, no gradient wanted, outside traces, SAM's head without high-res features)
:func:`upscaled_mask_logits` runs the same arithmetic in a layout a CPU runs fast. A 2x2 stride-2 transposed convolution is a per-pixel linear
map, C -> 4 x C': one GEMM over the image tokens, which already are (pixels, channels) rows. Its
output rows are put into raster order by a cheap row shuffle (whole rows of channels move), the
LayerNorm and the activations run on contiguous (pixels, channels) rows, and the masks come from
one GEMM whose output is already in raster order. The module path instead transposes the tokens
to NCHW, runs oneDNN's transposed convolutions with their layout conversions, and permutes twice for
``LayerNorm2d``: at vit_b's shapes (4096 tokens of 256 channels) it took 13 ms of a 51 ms click on
this project's CPU (``benchmarks/NOTES.md``, CPU). The results equal the reference's to float32
rounding (relative error ~4e-7 of the largest logit, as the reference's own error against float64).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from promptseg.ops.eager import cpu_float32_eager
from promptseg.ops.normalization import layer_norm_fp32

ELEMENTWISE_ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.Identity)
"""Activation modules the CPU path applies to (pixels, channels) rows: elementwise, so any layout
gives the same values (SAM and SAM 2 use ``nn.GELU``)."""


def upscaled_mask_logits(
    src: torch.Tensor,
    grid: tuple[int, int],
    upscaling: nn.Sequential,
    hyper_in: torch.Tensor,
    high_res_features: Optional[Sequence[torch.Tensor]] = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Mask logits from the two-way transformer's image tokens and the hypernetworks' outputs.

    Args:
        src: (P, H*W, C) processed image tokens of an (H, W) ``grid``.
        upscaling: the decoder's ``output_upscaling``: ConvTranspose2d(C, C/4, 2, stride 2),
            LayerNorm2d(C/4), activation, ConvTranspose2d(C/4, C/8, 2, stride 2), activation.
        hyper_in: (P, M, C/8) each mask token's hypernetwork output.
        high_res_features: SAM 2's (feat_s0, feat_s1), (P or 1, C/8, 4H, 4W) and (P or 1, C/4, 2H, 2W),
            added after the second and the first convolution; None for SAM.
        backend: ``"reference"`` forces :func:`upscaled_mask_logits_reference`.
    Returns:
        (P, M, 4H, 4W) mask logits.
    """
    if (
        backend != "reference"
        and high_res_features is None  # SAM 2's: their NCHW -> rows transposes cost more than the path saves
        and cpu_float32_eager(src, hyper_in, *upscaling.parameters())
        and upscaling_layout_supported(upscaling)
    ):
        return upscaled_mask_logits_cpu(src, grid, upscaling, hyper_in)
    return upscaled_mask_logits_reference(src, grid, upscaling, hyper_in, high_res_features)


def upscaled_mask_logits_reference(
    src: torch.Tensor,
    grid: tuple[int, int],
    upscaling: nn.Sequential,
    hyper_in: torch.Tensor,
    high_res_features: Optional[Sequence[torch.Tensor]] = None,
) -> torch.Tensor:
    """:func:`upscaled_mask_logits` as the official decoders compute it: the modules on (P, C, H, W)."""
    prompts, _, channels = src.shape
    features = src.transpose(1, 2).reshape(prompts, channels, *grid)
    if high_res_features is None:
        upscaled = upscaling(features)
    else:
        deconv1, norm1, act1, deconv2, act2 = upscaling
        feat_s0, feat_s1 = high_res_features
        upscaled = act1(norm1(deconv1(features) + feat_s1))
        upscaled = act2(deconv2(upscaled) + feat_s0)
    _, up_channels, height, width = upscaled.shape
    return (hyper_in @ upscaled.reshape(prompts, up_channels, height * width)).reshape(prompts, -1, height, width)


def upscaled_mask_logits_cpu(
    src: torch.Tensor, grid: tuple[int, int], upscaling: nn.Sequential, hyper_in: torch.Tensor
) -> torch.Tensor:
    """:func:`upscaled_mask_logits` without high-res features, as (pixels, channels) GEMMs (arguments as
    there; ``upscaling`` must have the layout :func:`upscaling_layout_supported` accepts)."""
    deconv1, norm1, act1, deconv2, act2 = upscaling
    prompts, tokens, _ = src.shape
    height, width = grid
    # (P, 2H, 2W, C/4): pixel (2i + a, 2j + b) of the first convolution's output, raster order
    upscaled = _pixel_shuffle_rows(_per_pixel_deconv(src.reshape(prompts * tokens, -1), deconv1), prompts, height, width)
    upscaled = act1(layer_norm_fp32(upscaled, tuple(norm1.weight.shape), norm1.weight, norm1.bias, norm1.eps))
    upscaled = _per_pixel_deconv(upscaled.reshape(-1, upscaled.shape[-1]), deconv2)
    upscaled = _pixel_shuffle_rows(upscaled, prompts, 2 * height, 2 * width)  # (P, 4H, 4W, C/8)
    upscaled = act2(upscaled).reshape(prompts, 16 * tokens, -1)
    masks = torch.bmm(hyper_in, upscaled.transpose(1, 2))  # (P, M, 16 * H * W), raster order
    return masks.view(prompts, -1, 4 * height, 4 * width)


def _per_pixel_deconv(rows: torch.Tensor, deconv: nn.ConvTranspose2d) -> torch.Tensor:
    """A 2x2 stride-2 transposed convolution of (pixels, C_in) rows: (pixels, 4 * C_out), the columns
    ordered (a, b, channel) for output pixel (2i + a, 2j + b) of input pixel (i, j)."""
    weight = deconv.weight  # (C_in, C_out, 2, 2)
    columns = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return torch.addmm(deconv.bias.repeat(4), rows, columns)


def _pixel_shuffle_rows(rows: torch.Tensor, prompts: int, height: int, width: int) -> torch.Tensor:
    """(P * H * W, 4 * C) rows of :func:`_per_pixel_deconv` on an (H, W) grid -> (P, 2H, 2W, C), contiguous."""
    channels = rows.shape[-1] // 4
    shuffled = rows.view(prompts, height, width, 2, 2 * channels).permute(0, 1, 3, 2, 4)
    return shuffled.reshape(prompts, 2 * height, 2 * width, channels)


def upscaling_layout_supported(upscaling: nn.Sequential) -> bool:
    """Whether ``upscaling`` has the layout of SAM's ``output_upscaling`` that the CPU path computes
    (2x2 stride-2 transposed convolutions with a bias, no padding, dilation or groups; a ``LayerNorm2d``;
    activations of :data:`ELEMENTWISE_ACTIVATIONS`)."""
    if not isinstance(upscaling, nn.Sequential) or len(upscaling) != 5:
        return False
    deconv1, norm1, _, deconv2, _ = upscaling
    for deconv in (deconv1, deconv2):
        if not (
            type(deconv) is nn.ConvTranspose2d
            and deconv.kernel_size == (2, 2)
            and deconv.stride == (2, 2)
            and deconv.padding == (0, 0)
            and deconv.output_padding == (0, 0)
            and deconv.dilation == (1, 1)
            and deconv.groups == 1
            and deconv.bias is not None
        ):
            return False
    # SAM's and SAM 2's LayerNorm2d (promptseg.modeling.common; the official classes share its name)
    if type(norm1).__name__ != "LayerNorm2d" or getattr(norm1, "weight", None) is None or norm1.weight.dim() != 1:
        return False
    return all(isinstance(activation, ELEMENTWISE_ACTIVATIONS) for activation in (upscaling[2], upscaling[4]))
