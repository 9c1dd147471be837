"""The Decoder seam: an image embedding plus a batch of prompt tokens in, low-res logits and IoU out.

Every caller that decodes prompts (the predictor, the mask generator, export's engine predictor)
holds a :class:`Decoder` and calls :meth:`Decoder.decode` and :meth:`Decoder.postprocess`; none of
them knows which implementation runs. Implementations:

* :class:`ModuleDecoder` (here): the model's own ``PromptEncoder`` and ``MaskDecoder`` modules;
* :class:`promptseg.decoders.fused.FusedDecoder`: the same arithmetic with the first two-way block's
  image-side work hoisted per image and promptseg's kernels;
* :class:`promptseg.decoders.graphs.GraphDecoder`: single prompts replayed from CUDA graphs;
* :class:`promptseg.decoders.auto.AutoDecoder`: picks one of those per call (the default);
* ``promptseg.export.engine_decoder.EngineDecoder``: ONNX Runtime / TensorRT engines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
import torch

from promptseg.modeling import Sam
from promptseg.ops import BACKENDS, mask_postprocess
from promptseg.prompts.batch import PromptBatch, host_to_device

DecodeResult = tuple[torch.Tensor, torch.Tensor]
"""(P, C, S, S) low-res mask logits and (P, C) IoU predictions, C = 3 with multimask output, else 1."""


class Decoder(ABC):
    """Decodes packed prompts on image embeddings, and brings low-res logits to full size.

    Attributes:
        backend: the ops backend of :meth:`postprocess` (see ``promptseg.ops.BACKENDS``).
    """

    backend: str = "auto"

    @abstractmethod
    def decode(
        self, features: torch.Tensor, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> DecodeResult:
        """Masks and IoU of P prompts.

        Args:
            features: (B, C, H, W) image embeddings.
            batch: the P prompts' tokens (see :class:`promptseg.prompts.batch.PromptBatch`).
            image_index: P ints on the host, the row of ``features`` each prompt belongs to.
            multimask_output: the 3 ambiguity masks (True) or the single-mask output.
        Returns:
            (P, C, 4H, 4W) low-res logits and (P, C) IoU predictions, C = 3 or 1; fresh tensors
            that the caller may keep.
        """

    def postprocess(
        self,
        low_res: torch.Tensor,
        input_size: Sequence[int],
        original_size: Sequence[int],
        image_size: int,
        threshold: float,
        return_logits: bool,
    ) -> torch.Tensor:
        """(P, C, h, w) low-res logits -> (P, C, H, W) bool masks (> ``threshold``), or float32
        logits with ``return_logits``; the arithmetic of ``Sam.postprocess_masks``.

        Args:
            input_size: (h_in, w_in) of the resized image inside the padded frame.
            original_size: (H, W) of the image.
            image_size: side of the padded square frame the encoder sees.
        """
        return mask_postprocess(
            low_res, input_size, original_size, image_size, threshold, return_logits, backend=self.backend
        ).masks


def select_outputs(masks: torch.Tensor, iou: torch.Tensor, multimask_output: bool) -> DecodeResult:
    """What ``MaskDecoder.forward`` returns of all ``num_mask_tokens`` outputs: masks 1.. with
    multimask output, else mask 0, and their IoU."""
    selected = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, selected], iou[:, selected]


def model_backend(model: Sam) -> str:
    """``reference`` when any op-calling module of ``model`` was set to the reference backend, else ``auto``."""
    backends = {getattr(module, "backend", "auto") for module in model.modules()}
    return "reference" if "reference" in backends else BACKENDS[0]


def device_longs(values: Sequence[int], device: torch.device) -> torch.Tensor:
    """A (len(values),) int64 tensor on ``device`` (through pinned memory to a GPU, without blocking)."""
    return host_to_device(np.asarray(values, dtype=np.int64).reshape(-1), device)


class ModuleDecoder(Decoder):
    """The model's ``PromptEncoder`` and ``MaskDecoder`` modules, as the official predictor runs them
    (plus key padding for prompts of different lengths and an index from prompts to images)."""

    def __init__(self, model: Sam) -> None:
        self.model = model

    @property
    def backend(self) -> str:  # type: ignore[override]
        return model_backend(self.model)

    def decode(
        self, features: torch.Tensor, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> DecodeResult:
        encoder = self.model.prompt_encoder
        prompts = len(batch.labels)
        return self.model.mask_decoder(
            image_embeddings=features,
            image_pe=encoder.get_dense_pe(),
            sparse_prompt_embeddings=batch.sparse_embeddings(encoder.embed_tokens(batch.coords, batch.labels)),
            dense_prompt_embeddings=encoder.dense_embeddings(prompts, batch.mask_inputs, batch.has_mask),
            multimask_output=multimask_output,
            image_index=device_longs(image_index, features.device),
            token_padding_mask=batch.token_mask,
        )
