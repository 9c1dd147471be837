"""The Decoder seam: an image embedding plus a batch of prompt tokens in, low-res logits and IoU out.

Every caller that decodes prompts (the predictor, the mask generator, the zero-shot tasks, export's
engine predictor) holds a :class:`Decoder` and calls :meth:`Decoder.decode`, then
:meth:`Decoder.postprocess` (full-size masks) or :meth:`Decoder.measure` (boxes and stability
scores of full-size masks); none of them knows which implementation runs. Implementations:

* :class:`ModuleDecoder` (here): the model's own modules, through :meth:`promptseg.modeling.Sam.decode_tokens`;
* :class:`promptseg.decoders.fused.FusedDecoder`: the same arithmetic with the first two-way block's
  image-side work hoisted per image and promptseg's kernels;
* :class:`promptseg.decoders.graphs.GraphDecoder`: single prompts replayed from CUDA graphs;
* :class:`promptseg.decoders.auto.AutoDecoder`: picks one of those per call (the default);
* :class:`promptseg.decoders.engine.EngineDecoder`: exported graphs in ONNX Runtime / TensorRT engines
  (the CPU engine's decoder, ``TensorRTPredictor``'s).

Post-processing and measuring belong to the decoder: the decoders over a model's modules
(:class:`ModelDecoder`) run them on the model's ops backend, so on a CUDA model with the extension
they take the one-pass ``mask_postprocess`` kernel; any other decoder (the engines) gets the
PyTorch reference arithmetic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
import torch

from promptseg.masks import mask_boxes_xyxy, stability_score
from promptseg.modeling import Sam
from promptseg.ops import cpu_mask_postprocess_applies, kernel_available, mask_postprocess, module_backend
from promptseg.prompts.batch import PromptBatch, host_to_device
from promptseg.prompts.tokens import SAM_RULE

DecodeResult = tuple[torch.Tensor, torch.Tensor]
"""(P, C, S, S) low-res mask logits and (P, C) IoU predictions, C = 3 with multimask output, else 1."""


class Decoder(ABC):
    """Decodes packed prompts on image embeddings, and brings low-res logits to full size.

    Subclasses implement :meth:`decode`; :meth:`postprocess` and :meth:`measure` run ``promptseg.ops``
    on :attr:`backend`.

    Attributes:
        backend: the ops backend of :meth:`postprocess` and :meth:`measure` (see
            ``promptseg.ops.BACKENDS``): here the PyTorch reference, the arithmetic of the official
            ``Sam.postprocess_masks`` and generator; decoders over a model's modules
            (:class:`ModelDecoder`) follow the model's backend, so take the kernels where they run.
        token_rule: the token rule of the prompts :meth:`decode` takes (``promptseg.prompts.tokens``:
            ``"sam"``, or ``"sam2"`` for the decoders of SAM 2 models, ``promptseg.decoders.sam2``).
    """

    backend: str = "reference"
    token_rule: str = SAM_RULE

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

    def prepare(self, features: torch.Tensor) -> None:
        """Do ahead the work of the next decodes that depends on the image ``features`` alone (the
        predictor calls this when an image is set); by default nothing. The fused decoders build their
        image table here, so that the first click costs what the later ones do."""

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

    def measure(
        self,
        low_res: torch.Tensor,
        input_size: Sequence[int],
        original_size: Sequence[int],
        image_size: int,
        threshold: float,
        stability_offset: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes and stability scores of the full-size masks of (P, M, h, w) low-res logits.

        Args:
            input_size, original_size, image_size, threshold: as in :meth:`postprocess`.
            stability_offset: the logit offset of the stability score's two cut-offs.
        Returns:
            (P * M, 4) int64 inclusive XYXY boxes of the masks (logits > ``threshold``) and
            (P * M,) float32 stability scores. Where the ``mask_postprocess`` CUDA kernel runs, three
            passes of it (the masks, and the areas at either stability cut-off) cost less than one
            full-size float32 logit tensor, which they never write. On the CPU (large outputs, not the
            reference backend) the same three passes run on :func:`promptseg.ops.mask_postprocess`'s
            tiled path, which computes only the tiles near each cut-off (one thread, 1800 x 1200
            photo: ~20 against ~83 ms a prompt for the full-size logits, benchmarks/NOTES.md).
            Elsewhere the boxes and scores come from the full-size logits of :meth:`postprocess`, as
            the official generator's do.

        Exactness: a box is the extent of a thresholded mask and a stability score the ratio of two
        pixel counts, so both are functions of the bool masks only. The tiled CPU masks equal the
        full-size logits' at every pixel whose logit is farther than ``TOLERANCE * (1 + max|low_res|)``
        (1e-5) from the cut (:mod:`promptseg.ops.cpu_mask_postprocess`), and the generator's output
        masks (:meth:`postprocess` at the threshold) already come from that path. Only a pixel within
        float32 rounding of a cut can move a box edge by one pixel or a count by one (a stability
        change of about 1 / area). Measured: the records of every case of
        ``tests/test_automatic_parity.py`` are identical to the full-logit ones; on the bundled model's
        16 x 16 grid over a 1800 x 1200 photo, 2 of 156 stability scores moved by <= 7e-7 (masks,
        areas, boxes and IoUs unchanged), less than the official package's own float32 differences.
        """
        if kernel_available("mask_postprocess", low_res, backend=self.backend) or (
            self.backend != "reference" and cpu_mask_postprocess_applies(low_res, original_size, False)
        ):
            boxes = mask_postprocess(low_res, input_size, original_size, image_size, threshold, with_stats=True).boxes
            inner, outer = (
                mask_postprocess(low_res, input_size, original_size, image_size, cut, with_stats=True).areas
                for cut in (threshold + stability_offset, threshold - stability_offset)
            )
            return boxes.flatten(0, 1), (inner / outer).flatten(0, 1)
        logits = self.postprocess(low_res, input_size, original_size, image_size, threshold, True).flatten(0, 1)
        return mask_boxes_xyxy(logits > threshold), stability_score(logits, threshold, stability_offset)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r})"


def select_outputs(masks: torch.Tensor, iou: torch.Tensor, multimask_output: bool) -> DecodeResult:
    """What ``MaskDecoder.forward`` returns of all ``num_mask_tokens`` outputs: masks 1.. with
    multimask output, else mask 0, and their IoU."""
    selected = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, selected], iou[:, selected]


def model_backend(model: Sam) -> str:
    """``reference`` when any op-calling module of ``model`` was set to the reference backend, ``kernels``
    when all were opted in to the kernels, else ``auto`` (:func:`promptseg.ops.module_backend`)."""
    return module_backend(model)


def device_longs(values: Sequence[int], device: torch.device) -> torch.Tensor:
    """A (len(values),) int64 tensor on ``device`` (through pinned memory to a GPU, without blocking)."""
    return host_to_device(np.asarray(values, dtype=np.int64).reshape(-1), device)


class ModelDecoder(Decoder):
    """A decoder over a :class:`~promptseg.modeling.Sam` model's modules: it post-processes and measures
    on the model's ops backend, so with the one-pass ``mask_postprocess`` kernel where it runs.

    Attributes:
        model: the model whose modules decode.
    """

    model: Sam

    @property
    def backend(self) -> str:  # type: ignore[override]
        """The model's ops backend (:func:`model_backend`)."""
        return model_backend(self.model)


class ModuleDecoder(ModelDecoder):
    """The model's ``PromptEncoder`` and ``MaskDecoder`` modules through :meth:`Sam.decode_tokens`, as the
    official predictor runs them (plus key padding for prompts of different lengths, extra text
    tokens, and an index from prompts to images)."""

    def __init__(self, model: Sam) -> None:
        self.model = model

    def decode(
        self, features: torch.Tensor, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> DecodeResult:
        dense = self.model.prompt_encoder.dense_embeddings(len(batch.labels), batch.mask_inputs, batch.has_mask)
        masks, iou = self.model.decode_tokens(
            features,
            batch.coords,
            batch.labels,
            dense,
            image_index=device_longs(image_index, features.device),
            extra_tokens=batch.extra_tokens,
            token_padding_mask=batch.token_mask,
        )
        return select_outputs(masks, iou, multimask_output)
