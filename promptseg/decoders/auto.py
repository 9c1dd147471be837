"""The default decoder: per call, the fastest implementation that applies to the model and embedding."""

from __future__ import annotations

import copy
from typing import Optional, Sequence, Union

import torch

from promptseg.decoders.base import DecodeResult, Decoder, ModelDecoder, ModuleDecoder
from promptseg.decoders.fused import FusedDecoder, cpu_hoisting_applies, fused_path_available
from promptseg.decoders.graphs import GraphDecoder
from promptseg.decoders.sam2 import (
    LowResCleanup,
    Sam2DecodeResult,
    Sam2FusedDecoder,
    Sam2ModuleDecoder,
    sam2_cpu_hoisting_applies,
    sam2_fused_path_available,
)
from promptseg.modeling import Sam
from promptseg.prompts.batch import PromptBatch
from promptseg.sam2.modeling.sam2_base import SAM2Base


class AutoDecoder(ModelDecoder):
    """Chooses, for each call, among:

    * ``graphs`` (:class:`GraphDecoder`): one prompt on a one-image embedding, when the fused path
      applies and ``use_cuda_graphs`` is on (a single click, in an interactive app; SAM only);
    * ``fused`` (:class:`FusedDecoder`, for SAM 2 :class:`~promptseg.decoders.sam2.Sam2FusedDecoder`):
      where the fused path applies (a CUDA bf16/fp16 model with promptseg's kernels, see
      :func:`fused_path_available`), and on the CPU in float32, where its hoisting pays without
      kernels (:func:`~promptseg.decoders.fused.cpu_hoisting_applies`);
    * ``module`` (:class:`ModuleDecoder`, for SAM 2 :class:`~promptseg.decoders.sam2.Sam2ModuleDecoder`):
      everywhere else (CUDA fp32, the reference backend).

    All give the model's results; only speed differs. For a SAM 2 model (``promptseg.sam2``) the
    decoder takes SAM 2's tokens and features and post-processes in SAM 2's frame
    (:attr:`token_rule` is ``"sam2"``; see :mod:`promptseg.decoders.sam2`).
    """

    def __init__(self, model: Union[Sam, SAM2Base], use_cuda_graphs: bool = True) -> None:
        self.model = model
        self.use_cuda_graphs = use_cuda_graphs
        """Replay single prompts from CUDA graphs on the fused path (False: the same work, eagerly)."""
        self.module: ModelDecoder
        self.fused: ModelDecoder
        self.graphs: Optional[GraphDecoder]
        if isinstance(model, SAM2Base):
            self.module, self.fused, self.graphs = Sam2ModuleDecoder(model), Sam2FusedDecoder(model), None
        else:
            self.module = ModuleDecoder(model)
            self.fused = FusedDecoder(model)
            self.graphs = GraphDecoder(self.fused)

    @property
    def token_rule(self) -> str:  # type: ignore[override]
        return self.module.token_rule

    @property
    def is_sam2(self) -> bool:
        """Whether the model is a SAM 2 model."""
        return isinstance(self.model, SAM2Base)

    def choose(self, features: torch.Tensor, prompts: int) -> Decoder:
        """The decoder that :meth:`decode` runs for ``prompts`` prompts on ``features``."""
        available = sam2_fused_path_available if self.is_sam2 else fused_path_available
        if not available(self.model, features):
            hoisting = sam2_cpu_hoisting_applies if self.is_sam2 else cpu_hoisting_applies
            return self.fused if hoisting(self.model, features) else self.module  # type: ignore[arg-type]
        if self.graphs is not None and self.use_cuda_graphs and prompts == 1 and features.shape[0] == 1:
            return self.graphs
        return self.fused

    def prepare(self, features: torch.Tensor) -> None:
        """The preparation of the decoder a single prompt on ``features`` would take."""
        self.choose(features, 1).prepare(features)

    def decode(
        self, features: torch.Tensor, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> DecodeResult:
        return self.choose(features, len(batch.labels)).decode(features, batch, image_index, multimask_output)

    def decode_with_object_scores(
        self, features: torch.Tensor, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> Sam2DecodeResult:
        """SAM 2 models only: :meth:`decode` plus the (P, 1) object score logits."""
        if not self.is_sam2:
            raise TypeError("object scores come from SAM 2 models (promptseg.sam2); SAM has no object score")
        chosen = self.choose(features, len(batch.labels))
        return chosen.decode_with_object_scores(features, batch, image_index, multimask_output)  # type: ignore[attr-defined]

    def postprocess(
        self,
        low_res: torch.Tensor,
        input_size: Sequence[int],
        original_size: Sequence[int],
        image_size: int,
        threshold: float,
        return_logits: bool,
    ) -> torch.Tensor:
        """The module decoder's post-processing (every choice shares it)."""
        return self.module.postprocess(low_res, input_size, original_size, image_size, threshold, return_logits)

    def measure(
        self,
        low_res: torch.Tensor,
        input_size: Sequence[int],
        original_size: Sequence[int],
        image_size: int,
        threshold: float,
        stability_offset: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The module decoder's measuring (every choice shares it)."""
        return self.module.measure(low_res, input_size, original_size, image_size, threshold, stability_offset)

    @property
    def cleanup(self) -> Optional[LowResCleanup]:
        """SAM 2 models: the low-res clean-up of the post-processing (None: none)."""
        if not self.is_sam2:
            raise TypeError("region clean-up before resizing is SAM 2's post-processing; SAM has none")
        return self.module.cleanup  # type: ignore[attr-defined]

    def with_cleanup(self, cleanup: Optional[LowResCleanup]) -> "AutoDecoder":
        """SAM 2 models: a decoder sharing this one's decoders and caches, post-processing with ``cleanup``."""
        if not self.is_sam2:
            raise TypeError("region clean-up before resizing is SAM 2's post-processing; SAM has none")
        other = copy.copy(self)
        other.module = self.module.with_cleanup(cleanup)  # type: ignore[attr-defined]
        other.fused = self.fused.with_cleanup(cleanup)  # type: ignore[attr-defined]
        return other
