"""What a kernel's self-check computes (:mod:`promptseg.ops.dispatch` decides when it runs).

For each op: a small random case of the real call's shapes, in its dtype and on its device
(the batch cut to one image, or to at most :data:`MAX_CASE_PROMPTS` prompts; random activations,
the call's own weights), the PyTorch reference on that case computed in float32, and a comparison
with the kernel's output on it. Random numbers come from a generator of the check's own, seeded,
so a check never moves the caller's random state and repeats exactly.

Tolerances (:data:`ATTENTION_TOLERANCE`): twice those of the GPU tests against float64, so a
right kernel never trips them, while a wrong one (a wrong index, a missing scale, a race) is off by
tens of percent. Mask post-processing: the thresholded masks may differ only where the reference
logit lies within :data:`LOGIT_TIE` of the threshold, and boxes and areas must be those of the
kernel's own masks.

Cost, per (op, device, dtype, variant), once per process: one kernel call and one float32
reference call on one image (or a few prompts). Measured on a 2-core CPU with the references
standing in for the kernels (bf16, the bundled vit_tiny): 1.7 s of checks in the first prediction
of a process (1.5 s of it the global attention), against about 10.5 s for one bf16 prediction
there. On a GPU, estimated from the case sizes (no GPU has run it): the largest case, the encoder's
global attention of ViT-H at 1024x1024 (64x64 tokens, 16 heads of 80), is about 86 GFLOP of
float32 reference and 1 GiB of float32 logits (attended in chunks), roughly 3-5 ms on an H100;
the decoder's attention and the mask post-processing cases are smaller by orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional

import torch

from promptseg.ops.decoder_attention import gathered_token_attention_reference, token_attention_reference
from promptseg.ops.encoder_attention import vit_attention_reference
from promptseg.ops.mask_postprocess import mask_postprocess_reference
from promptseg.ops.mask_stats import mask_areas, mask_boxes_xyxy

ATTENTION_TOLERANCE = {torch.bfloat16: 2e-2, torch.float16: 6e-3}
"""Relative error (Frobenius norm) allowed between an attention kernel and its float32 reference."""
LOGIT_TIE = 1e-3
"""Mask post-processing: a pixel may be thresholded differently only this close to the threshold."""
LOGIT_TOLERANCE = 1e-4
"""Mask post-processing with ``return_logits``: most absolute error, relative to the largest logit."""
MAX_CASE_PROMPTS = 4
SEED = 0x5E1F


@dataclass(frozen=True)
class SelfCheck:
    """How to check one op's kernel.

    Attributes:
        case: the kernel's arguments -> the arguments of the random case.
        reference: the reference with the kernel's arguments and outputs (in the inputs' dtype).
        expected: the reference on a case, in float32 (what the kernel's output is compared with).
        mismatch: (kernel output, expected, case) -> None when they agree, else what differs.
        variant: the kernel's arguments -> which code path of the kernel they take (checked apart).
    """

    case: Callable[..., tuple]
    reference: Callable[..., Any]
    expected: Callable[..., Any]
    mismatch: Callable[[Any, Any, tuple], Optional[str]]
    variant: Callable[..., Hashable]


def run_self_check(op_name: str, kernel: Callable[..., Any], args: tuple) -> Optional[str]:
    """None when ``kernel`` agrees with the reference of ``op_name`` on a random case of ``args``'
    shapes, else what differed (or what the kernel raised)."""
    check = SELF_CHECKS[op_name]
    try:
        case = check.case(*args)
        with torch.no_grad():
            expected = check.expected(*case)
            actual = kernel(*case)
        return check.mismatch(actual, expected, case)
    except Exception as error:  # noqa: BLE001 - a kernel that raises has failed its check
        return f"the check raised {type(error).__name__}: {str(error)[:300]}"


def reference_of(op_name: str) -> Callable[..., Any]:
    """The reference of ``op_name`` with its kernel's arguments and outputs (what runs after a failed check)."""
    return SELF_CHECKS[op_name].reference


def variant_of(op_name: str, args: tuple) -> Hashable:
    """Which code path of the kernel of ``op_name`` its arguments ``args`` take."""
    return SELF_CHECKS[op_name].variant(*args)


# ------------------------------------------------------------------ helpers
def _generator(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(SEED)


def _random(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """Standard normal values (times ``scale``) of ``shape`` in ``like``'s dtype, on its device."""
    values = torch.randn(shape, generator=generator, device=like.device, dtype=torch.float32)
    return (values * scale).to(like.dtype)


def _float(value: Any) -> Any:
    return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


def _relative_mismatch(actual: torch.Tensor, expected: torch.Tensor, tolerance: float) -> Optional[str]:
    if actual.shape != expected.shape:
        return f"output shape {tuple(actual.shape)}, the reference's {tuple(expected.shape)}"
    if not bool(torch.isfinite(actual).all()):
        return "the output holds NaN or inf where the reference is finite"
    actual, expected = actual.double(), expected.double()
    error = ((actual - expected).norm() / expected.norm().clamp_min(1e-30)).item()
    if error > tolerance:
        return f"relative error {error:.3g} against the float32 reference (tolerance {tolerance:g})"
    return None


def _some_key(mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A key padding mask with at least its first key taking part in every row (a row of none is undefined)."""
    if mask is None:
        return None
    mask = mask.clone()
    mask[:, 0] = True
    return mask


# ------------------------------------------------------------------ vit_attention
def _vit_case(qkv, num_heads, rel_pos_h, rel_pos_w, window_size, qkv_bias) -> tuple:
    one = _random((1, *qkv.shape[1:]), qkv, _generator(qkv.device)).contiguous()
    return one, num_heads, rel_pos_h, rel_pos_w, window_size, qkv_bias


def _vit_expected(qkv, num_heads, rel_pos_h, rel_pos_w, window_size, qkv_bias) -> torch.Tensor:
    return vit_attention_reference(
        qkv.float(), num_heads, _float(rel_pos_h), _float(rel_pos_w), window_size, _float(qkv_bias)
    )


def _vit_variant(qkv, num_heads, rel_pos_h, rel_pos_w, window_size, qkv_bias) -> Hashable:
    return ("windowed" if window_size > 0 else "global", rel_pos_h is not None, qkv_bias is not None)


def _attention_mismatch(actual: torch.Tensor, expected: torch.Tensor, case: tuple) -> Optional[str]:
    return _relative_mismatch(actual, expected, ATTENTION_TOLERANCE.get(case[0].dtype, 2e-2))


# ------------------------------------------------------------------ token attention
def _token_case(q, k, v, num_heads, key_padding_mask=None) -> tuple:
    generator = _generator(q.device)
    queries = _random((1, *q.shape[1:]), q, generator)
    keys, values = (_random((1, *k.shape[1:]), k, generator) for _ in range(2))
    return queries, keys, values, num_heads, _some_key(None if key_padding_mask is None else key_padding_mask[:1])


def _token_expected(q, k, v, num_heads, key_padding_mask=None) -> torch.Tensor:
    return token_attention_reference(q.float(), k.float(), v.float(), num_heads, key_padding_mask)


def _token_variant(q, k, v, num_heads, key_padding_mask=None) -> Hashable:
    return key_padding_mask is not None


def _gathered_case(q, k, v, num_heads, key_padding_mask=None, q_index=None, kv_index=None) -> tuple:
    generator = _generator(q.device)
    prompts = next((index.shape[0] for index in (q_index, kv_index) if index is not None), q.shape[0])
    count = min(prompts, MAX_CASE_PROMPTS)
    q_rows = q.shape[0] if q_index is not None else count
    kv_rows = k.shape[0] if kv_index is not None else count
    queries = _random((q_rows, *q.shape[1:]), q, generator)
    keys, values = (_random((kv_rows, *k.shape[1:]), k, generator) for _ in range(2))
    mask = _some_key(None if key_padding_mask is None else key_padding_mask[:count])
    return (queries, keys, values, num_heads, mask, None if q_index is None else q_index[:count],
            None if kv_index is None else kv_index[:count])


def _gathered_expected(q, k, v, num_heads, key_padding_mask=None, q_index=None, kv_index=None) -> torch.Tensor:
    return gathered_token_attention_reference(q.float(), k.float(), v.float(), num_heads, key_padding_mask, q_index, kv_index)


def _gathered_variant(q, k, v, num_heads, key_padding_mask=None, q_index=None, kv_index=None) -> Hashable:
    return key_padding_mask is not None, q_index is not None, kv_index is not None


# ------------------------------------------------------------------ mask post-processing
def _postprocess_case(low_res, input_size, original_size, image_size, threshold, return_logits, with_stats) -> tuple:
    logits = _random((1, *low_res.shape[1:]), low_res, _generator(low_res.device), scale=8.0).contiguous()
    return logits, input_size, original_size, image_size, threshold, return_logits, with_stats


def _postprocess_reference(low_res, input_size, original_size, image_size, threshold, return_logits, with_stats):
    """:func:`mask_postprocess_reference` as the kernel returns it: (masks, boxes, areas), the last two
    (0,) int64 without ``with_stats``."""
    out = mask_postprocess_reference(low_res, input_size, original_size, image_size, threshold, return_logits, with_stats)
    empty = low_res.new_empty((0,), dtype=torch.int64)
    return out.masks, empty if out.boxes is None else out.boxes, empty if out.areas is None else out.areas


def _postprocess_expected(low_res, input_size, original_size, image_size, threshold, return_logits, with_stats):
    """The reference's full-size float32 logits."""
    return mask_postprocess_reference(low_res, input_size, original_size, image_size, threshold, True).masks


def _postprocess_variant(low_res, input_size, original_size, image_size, threshold, return_logits, with_stats) -> Hashable:
    return bool(return_logits), bool(with_stats)


def _postprocess_mismatch(actual: tuple, logits: torch.Tensor, case: tuple) -> Optional[str]:
    masks, boxes, areas = actual
    threshold, return_logits, with_stats = case[4], case[5], case[6]
    if masks.shape != logits.shape:
        return f"output shape {tuple(masks.shape)}, the reference's {tuple(logits.shape)}"
    if return_logits:
        error = ((masks.double() - logits.double()).abs().max() / logits.abs().max().clamp_min(1e-30)).item()
        if not error <= LOGIT_TOLERANCE:
            return f"logits differ by {error:.3g} of the largest (tolerance {LOGIT_TOLERANCE:g})"
        binary = masks > threshold
    else:
        binary = masks
        differ = binary != (logits > threshold)
        wrong = int((differ & ((logits - threshold).abs() >= LOGIT_TIE)).sum())
        if wrong:
            return f"{wrong} of {binary.numel()} mask pixels thresholded differently from the reference, away from the threshold"
    if with_stats:
        if not torch.equal(boxes, mask_boxes_xyxy(binary)):
            return "boxes differ from those of its own masks"
        if not torch.equal(areas, mask_areas(binary)):
            return "areas differ from those of its own masks"
    return None


SELF_CHECKS: dict[str, SelfCheck] = {
    "vit_attention": SelfCheck(_vit_case, vit_attention_reference, _vit_expected, _attention_mismatch, _vit_variant),
    "token_attention": SelfCheck(
        _token_case, token_attention_reference, _token_expected, _attention_mismatch, _token_variant
    ),
    "gathered_token_attention": SelfCheck(
        _gathered_case, gathered_token_attention_reference, _gathered_expected, _attention_mismatch, _gathered_variant
    ),
    "mask_postprocess": SelfCheck(
        _postprocess_case, _postprocess_reference, _postprocess_expected, _postprocess_mismatch, _postprocess_variant
    ),
}
"""The self-check of every op of :data:`promptseg.ops.dispatch.OP_NAMES`."""
