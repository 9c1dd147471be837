"""The attention boundary between the model and its implementations.

Model files call only the functions exported here. Each op has a pure-PyTorch
reference; when the compiled extension (``promptseg._C``) provides a kernel for
the inputs at hand, :mod:`promptseg.ops.dispatch` routes the call to it. The
model never learns which implementation ran.
"""

from promptseg.ops.decoder_attention import gathered_token_attention, token_attention
from promptseg.ops.dispatch import BACKENDS, available_kernels, extension_loaded, kernels_enabled, set_backend
from promptseg.ops.encoder_attention import vit_attention
from promptseg.ops.mask_postprocess import PostprocessedMasks, mask_postprocess
from promptseg.ops.normalization import layer_norm_fp32

__all__ = [
    "BACKENDS",
    "available_kernels",
    "extension_loaded",
    "gathered_token_attention",
    "kernels_enabled",
    "layer_norm_fp32",
    "mask_postprocess",
    "PostprocessedMasks",
    "set_backend",
    "token_attention",
    "vit_attention",
]
