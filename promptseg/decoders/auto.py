"""The default decoder: per call, the fastest implementation that applies to the model and embedding."""

from __future__ import annotations

from typing import Sequence

import torch

from promptseg.decoders.base import DecodeResult, Decoder, ModelDecoder, ModuleDecoder
from promptseg.decoders.fused import FusedDecoder, fused_path_available
from promptseg.decoders.graphs import GraphDecoder
from promptseg.modeling import Sam
from promptseg.prompts.batch import PromptBatch


class AutoDecoder(ModelDecoder):
    """Chooses, for each call, among:

    * ``graphs`` (:class:`GraphDecoder`): one prompt on a one-image embedding, when the fused path
      applies and ``use_cuda_graphs`` is on (a single click, in an interactive app);
    * ``fused`` (:class:`FusedDecoder`): where the fused path applies (a CUDA bf16/fp16 model with
      promptseg's kernels, see :func:`fused_path_available`);
    * ``module`` (:class:`ModuleDecoder`): everywhere else (CPU, fp32, the reference backend).

    All three give the model's results; only speed differs.
    """

    def __init__(self, model: Sam, use_cuda_graphs: bool = True) -> None:
        self.model = model
        self.use_cuda_graphs = use_cuda_graphs
        """Replay single prompts from CUDA graphs on the fused path (False: the same work, eagerly)."""
        self.module = ModuleDecoder(model)
        self.fused = FusedDecoder(model)
        self.graphs = GraphDecoder(self.fused)

    def choose(self, features: torch.Tensor, prompts: int) -> Decoder:
        """The decoder that :meth:`decode` runs for ``prompts`` prompts on ``features``."""
        if not fused_path_available(self.model, features):
            return self.module
        if self.use_cuda_graphs and prompts == 1 and features.shape[0] == 1:
            return self.graphs
        return self.fused

    def decode(
        self, features: torch.Tensor, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> DecodeResult:
        return self.choose(features, len(batch.labels)).decode(features, batch, image_index, multimask_output)
