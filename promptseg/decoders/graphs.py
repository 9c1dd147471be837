"""The graph-replay decoder: single prompts on one image, replayed from captured CUDA graphs.

A bucket is one prompt shape (number of tokens, mask input or not, multimask or not; text prompts
are not captured and run on the fused path); its first
call captures a graph of the prompt encoder and :func:`promptseg.decoders.fused.decode_masks`
reading static buffers, later calls copy the prompt in and replay it, with no host
synchronisation. The image table lives in static buffers that a new image is copied into, so
images of one size share their graphs. Graphs are dropped when the model's weights move
(``.to()``, a new submodule); at most ``max_graphs`` are kept, least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import chain
from typing import Callable, Optional, Sequence

import torch

from promptseg.decoders.base import DecodeResult, ModelDecoder, select_outputs
from promptseg.decoders.fused import FusedDecoder, ImageTable, decode_masks
from promptseg.prompts.batch import PromptBatch
from promptseg.prompts.tokens import NOT_A_POINT


@dataclass
class _Bucket:
    """One prompt shape: static inputs, the captured graph and its static outputs."""

    frame_xy: torch.Tensor
    coords: torch.Tensor
    labels: torch.Tensor
    mask_input: Optional[torch.Tensor]
    graph: Optional[torch.cuda.CUDAGraph] = None
    outputs: tuple[torch.Tensor, ...] = ()


class GraphDecoder(ModelDecoder):
    """One prompt on a one-image embedding from a CUDA graph; everything else goes to ``fused``.

    Its results equal ``fused``'s: the graph replays the same computation on the same table.
    """

    def __init__(self, fused: FusedDecoder, max_graphs: int = 8) -> None:
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.fused = fused
        self.model = fused.model
        self.max_graphs = max_graphs
        self.buckets: OrderedDict[tuple, _Bucket] = OrderedDict()
        """Captured graphs by (tokens, has mask input, multimask output), least recently used first."""
        self._table: Optional[ImageTable] = None
        self._source: Optional[ImageTable] = None
        self._signature: tuple = ()

    @torch.no_grad()
    def decode(
        self, features: torch.Tensor, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> DecodeResult:
        if len(batch.labels) != 1 or features.shape[0] != 1 or batch.token_mask is not None or batch.extra_tokens is not None:
            return self.fused.decode(features, batch, image_index, multimask_output)
        self._sync_model()
        self._load(self.fused.table(features))
        key = (batch.labels.shape[1], batch.mask_inputs is not None, multimask_output)
        bucket = self.buckets.get(key) or self._new_bucket(key)
        self.buckets.move_to_end(key)
        bucket.coords.copy_(batch.coords)
        bucket.labels.copy_(batch.labels)
        if bucket.mask_input is not None and batch.mask_inputs is not None:
            bucket.mask_input.copy_(batch.mask_inputs)
        bucket.graph.replay()
        low_res, iou = bucket.outputs
        return low_res.clone(), iou.clone()

    def _sync_model(self) -> None:
        """Forget graphs and buffers that were built on other weight tensors than the model's current ones."""
        modules = (self.model.prompt_encoder, self.model.mask_decoder)
        tensors = chain.from_iterable(chain(m.parameters(), m.buffers()) for m in modules)
        signature = tuple((t.data_ptr(), t.dtype, t.device) for t in tensors)
        if signature != self._signature:
            self.buckets.clear()
            self._table = self._source = None
            self._signature = signature

    def _load(self, table: ImageTable) -> None:
        """Copy ``table`` into the static buffers the graphs read (allocating them for a new shape)."""
        if table is self._source:
            return
        new = table.tensors()
        if self._table is None or [t.shape for t in new.values()] != [t.shape for t in self._table.tensors().values()]:
            self.buckets.clear()
            self._table = ImageTable(**{name: tensor.clone() for name, tensor in new.items()})
        else:
            for name, tensor in self._table.tensors().items():
                tensor.copy_(new[name])
        self._source = table

    def _new_bucket(self, key: tuple) -> _Bucket:
        """Static inputs for a bucket and its graph, captured after a warm-up run."""
        tokens, has_mask, multimask_output = key
        device = self._table.src.device
        encoder = self.model.prompt_encoder
        frame_h, frame_w = encoder.input_image_size
        bucket = _Bucket(
            frame_xy=torch.tensor([frame_w, frame_h], dtype=torch.float32, device=device),
            coords=torch.zeros(1, tokens, 2, device=device),
            labels=torch.full((1, tokens), NOT_A_POINT, dtype=torch.long, device=device),
            mask_input=torch.zeros(1, 1, *encoder.mask_input_size, device=device) if has_mask else None,
        )
        first_row = torch.zeros(1, dtype=torch.long, device=device)

        def run() -> DecodeResult:
            sparse = self.model.embed_prompt_tokens(bucket.coords, bucket.labels, frame_xy=bucket.frame_xy)
            mask_embeddings = encoder.embed_masks(bucket.mask_input) if bucket.mask_input is not None else None
            table_index = first_row + (1 if has_mask else 0)  # a mask input's rows follow the image's
            masks, iou = decode_masks(self.model, self._table, table_index, sparse, None, first_row, mask_embeddings)
            return select_outputs(masks, iou, multimask_output)

        bucket.graph, bucket.outputs = _capture(run, device)
        self.buckets[key] = bucket
        while len(self.buckets) > self.max_graphs:
            self.buckets.popitem(last=False)
        return bucket


def _capture(
    run: Callable[[], tuple[torch.Tensor, ...]], device: torch.device
) -> tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...]]:
    """A CUDA graph of ``run`` and its static outputs; one eager warm-up run on a side stream first
    (lazy initialisations such as cuBLAS workspaces must not happen during capture)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        run()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = run()
    return graph, outputs
