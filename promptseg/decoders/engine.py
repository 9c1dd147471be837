"""``EngineDecoder``: a :class:`promptseg.decoders.Decoder` that runs an exported batched-decoder graph
(``promptseg.export.export_onnx_batched_decoder``) in an engine: TensorRT, or ONNX Runtime."""

from __future__ import annotations

from typing import Mapping, Optional, Protocol, Sequence

import torch

from promptseg.decoders.base import DecodeResult, Decoder, select_outputs
from promptseg.modeling import Sam
from promptseg.prompts.batch import PromptBatch
from promptseg.prompts.tokens import NOT_A_POINT


class DecoderEngine(Protocol):
    """Runs the batched-decoder graph: input tensors by name in, output tensors by name out (the
    decoders' side of the engines that ``promptseg.encoders.engine.Engine`` describes for encoders;
    the two seams import nothing of each other)."""

    device: torch.device

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


class ShapeLimits(Protocol):
    """The shape limits an engine was built with (``promptseg.export.profiles.EngineLimits``)."""

    max_prompts: int
    max_images: int
    max_points: int


class EngineDecoder(Decoder):
    """Decodes packed prompts with a batched-decoder engine, ``limits.max_prompts`` prompts on at most
    ``limits.max_images`` distinct images per call (all of them in one call without limits, as for
    ONNX Runtime's dynamic shapes); low-res logits and IoU come back float32. Post-processing and
    measuring are the :class:`~promptseg.decoders.Decoder` defaults (the PyTorch reference arithmetic)."""

    def __init__(
        self, engine: DecoderEngine, limits: Optional[ShapeLimits], num_mask_tokens: int, mask_size: int
    ) -> None:
        """
        Args:
            engine: runs the graph of ``export_onnx_batched_decoder``.
            limits: the shape limits the engine was built with (``promptseg.export.profiles.EngineLimits``),
                or None for an engine without any (ONNX Runtime).
            num_mask_tokens: masks the graph returns per prompt (``MaskDecoder.num_mask_tokens``).
            mask_size: side S of the low-res logits and of mask inputs.
        """
        self.engine = engine
        self.limits = limits
        self.num_mask_tokens = num_mask_tokens
        self.mask_size = mask_size

    @classmethod
    def for_model(cls, engine: DecoderEngine, model: Sam, limits: Optional[ShapeLimits] = None) -> "EngineDecoder":
        """The decoder engine exported from ``model``: its mask count and low-res mask size."""
        return cls(engine, limits, model.mask_decoder.num_mask_tokens, model.prompt_encoder.mask_input_size[0])

    def decode(
        self, features: torch.Tensor, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> DecodeResult:
        side = self.mask_size
        outputs = run_decoder_engine(
            self.engine,
            {"image_embeddings": features},
            batch,
            image_index,
            self.limits,
            {"low_res_masks": (self.num_mask_tokens, side, side), "iou_predictions": (self.num_mask_tokens,)},
        )
        return select_outputs(outputs["low_res_masks"], outputs["iou_predictions"], multimask_output)


def run_decoder_engine(
    engine: DecoderEngine,
    image_inputs: Mapping[str, torch.Tensor],
    batch: PromptBatch,
    image_index: Sequence[int],
    limits: Optional[ShapeLimits],
    output_shapes: Mapping[str, tuple[int, ...]],
) -> dict[str, torch.Tensor]:
    """P packed prompts through a batched-decoder graph (SAM's ``export_onnx_batched_decoder`` or SAM 2's
    ``export_sam2_onnx_decoder``), ``limits.max_prompts`` prompts on at most ``limits.max_images`` distinct
    images per call (None: no limit, one call).

    Args:
        image_inputs: the graph's per-image inputs, each (B, ...) (``image_embeddings``; SAM 2 also its
            high-resolution levels); each call gets the rows of the images it decodes.
        batch: the prompts (point, box and mask prompts; the tokens of one rule); image_index: (P,)
            the image of each prompt.
        output_shapes: the per-prompt shape of each graph output to collect (``low_res_masks`` among them:
            its side is the side of the mask inputs).
    Returns:
        Each output of ``output_shapes`` as a (P, *shape) float32 tensor on the engine's device.
    Raises:
        ValueError: text tokens, or more tokens per prompt than ``limits.max_points``.
    """
    if batch.extra_tokens is not None:
        raise ValueError(
            "exported engines take point, box and mask prompts only; decode text prompts with a "
            "SamPredictor on the PyTorch model (its default decoder)"
        )
    coords, labels, token_mask = at_least_one_token(batch)
    prompts, tokens = labels.shape
    if limits is not None and tokens > limits.max_points:
        raise ValueError(
            f"a prompt has {tokens} tokens (points, box corners, padding point); the engine takes at most "
            f"{limits.max_points}: rebuild with a larger EngineLimits.max_points"
        )
    device = engine.device
    side = output_shapes["low_res_masks"][-1]
    mask_inputs = batch.mask_inputs if batch.mask_inputs is not None else coords.new_zeros(prompts, 1, side, side)
    has_mask = batch.has_mask.float() if batch.has_mask is not None else coords.new_zeros(prompts)
    results = {name: torch.empty(prompts, *shape, device=device) for name, shape in output_shapes.items()}
    index = torch.as_tensor(list(image_index), dtype=torch.long, device=device)
    images = index.unique()
    group_size = limits.max_images if limits is not None else max(len(images), 1)
    for first in range(0, len(images), group_size):
        group = images[first : first + group_size]
        members = torch.isin(index, group).nonzero().flatten()
        for chunk in members.split(limits.max_prompts if limits is not None else max(len(members), 1)):
            outputs = engine(
                {
                    **{name: rows[group] for name, rows in image_inputs.items()},
                    "point_coords": coords[chunk],
                    "point_labels": labels[chunk].float(),
                    "token_mask": token_mask[chunk],
                    "mask_input": mask_inputs[chunk],
                    "has_mask_input": has_mask[chunk],
                    "image_index": torch.searchsorted(group, index[chunk]),
                }
            )
            for name, result in results.items():
                result[chunk] = outputs[name].float()
    return results


def at_least_one_token(batch: PromptBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, T, 2) coords, (P, T) labels and (P, T) bool token mask with T >= 1.

    Prompts with no token at all (a mask only) get one masked-out token: the
    engine's profile starts at one token, and a masked token is never attended to.
    """
    coords, labels = batch.coords, batch.labels
    token_mask = batch.token_mask if batch.token_mask is not None else torch.ones_like(labels, dtype=torch.bool)
    if labels.shape[1] == 0:
        coords = coords.new_zeros(len(labels), 1, 2)
        labels = labels.new_full((len(labels), 1), NOT_A_POINT)
        token_mask = torch.zeros_like(labels, dtype=torch.bool)
    return coords, labels, token_mask
