"""The kernel boundary between the model and its implementations.

Code outside ``promptseg/ops/`` imports only from this package, never from one of its modules.
Each op has a pure-PyTorch reference (``<op>_reference``, exported too); when the compiled
extension (``promptseg._C``) provides a kernel for the inputs at hand, and the kernels are in force
(opt-in until a GPU record verified them: :func:`kernel_policy`), :mod:`promptseg.ops.dispatch`
routes the call to it, after checking the kernel against its reference on its first use
(:mod:`promptseg.ops.self_check`; :func:`kernel_checks`). The model never learns which
implementation ran; :func:`kernel_available` tells a caller whether a kernel would.
"""

from promptseg.ops.build_stamp import build_stamp_status
from promptseg.ops.decoder_attention import (
    gathered_token_attention,
    gathered_token_attention_reference,
    token_attention,
    token_attention_reference,
)
from promptseg.ops.dispatch import (
    BACKENDS,
    DISABLE_ENV,
    KERNELS_ENV,
    KernelCheck,
    KernelCheckWarning,
    KernelPolicy,
    available_kernels,
    check_backend,
    extension_build_stamp,
    extension_loaded,
    kernel_available,
    kernel_checks,
    kernel_limits,
    kernel_policy,
    kernels_enabled,
    module_backend,
    record_verifies,
    reset_kernel_checks,
    set_backend,
    verified_capabilities,
)
from promptseg.ops.encoder_attention import vit_attention, vit_attention_reference
from promptseg.ops.cpu_mask_postprocess import cpu_mask_postprocess_applies
from promptseg.ops.mask_postprocess import (
    PostprocessedMasks,
    mask_postprocess,
    mask_postprocess_reference,
    upscale_mask_logits,
)
from promptseg.ops.mask_stats import fast_reductions_apply, mask_areas, mask_boxes_xyxy, true_counts
from promptseg.ops.normalization import layer_norm_fp32
from promptseg.ops.cpu_folded_attention import Projections
from promptseg.ops.projected_attention import gathered_attention_output, projected_attention
from promptseg.ops.output_upscaling import upscaled_mask_logits, upscaled_mask_logits_reference
from promptseg.ops.rel_pos import rel_pos_logits, rel_pos_table
from promptseg.ops.windows import partition_windows, unpartition_windows

__all__ = [
    "BACKENDS",
    "DISABLE_ENV",
    "KERNELS_ENV",
    "KernelCheck",
    "KernelCheckWarning",
    "KernelPolicy",
    "available_kernels",
    "build_stamp_status",
    "check_backend",
    "cpu_mask_postprocess_applies",
    "extension_build_stamp",
    "extension_loaded",
    "fast_reductions_apply",
    "gathered_attention_output",
    "gathered_token_attention",
    "gathered_token_attention_reference",
    "kernel_available",
    "kernel_checks",
    "kernel_limits",
    "kernel_policy",
    "kernels_enabled",
    "layer_norm_fp32",
    "mask_areas",
    "mask_boxes_xyxy",
    "mask_postprocess",
    "mask_postprocess_reference",
    "module_backend",
    "partition_windows",
    "Projections",
    "projected_attention",
    "PostprocessedMasks",
    "record_verifies",
    "rel_pos_logits",
    "rel_pos_table",
    "reset_kernel_checks",
    "set_backend",
    "true_counts",
    "token_attention",
    "token_attention_reference",
    "unpartition_windows",
    "upscaled_mask_logits",
    "upscaled_mask_logits_reference",
    "upscale_mask_logits",
    "verified_capabilities",
    "vit_attention",
    "vit_attention_reference",
]
