"""The fused CUDA path of :class:`promptseg.SamPredictor` (bf16/fp16 models with the compiled kernels).

Three things differ from running the model's modules as they are; the arithmetic does not:

* Hoisting. What the first two-way block computes from the image alone (the image tokens plus
  the no-mask embedding, their token->image keys and values, their image->token queries) is
  computed once per image (:func:`image_table`) instead of once per prompt.
* Sharing. P prompts read those rows through an index (:func:`promptseg.ops.gathered_token_attention`)
  instead of P copies; a prompt with a mask input gets rows of its own, appended to the table.
  After the first block every prompt has its own image tokens, and the model's modules run on.
* One pass for the full-size masks (:func:`promptseg.ops.mask_postprocess`), and for a single
  prompt on the current image, CUDA graphs (:class:`ClickGraphs`) that replay prompt encoder,
  decoder and post-processing with no host synchronisation but the copy of the results.

Every module and weight is the model's own; only the order in which the first block's work is
grouped changes. On the CPU or in fp32 the predictor never comes here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from itertools import chain
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from promptseg.modeling import Sam
from promptseg.modeling.prompt_encoder import NOT_A_POINT, PromptEncoder
from promptseg.modeling.transformer import TwoWayTransformer
from promptseg.ops import gathered_token_attention, mask_postprocess
from promptseg.ops.dispatch import kernel_for
from promptseg.prompt_batch import PromptBatch, host_to_device

FUSED_OPS = ("token_attention", "gathered_token_attention", "mask_postprocess")
"""Kernels the fused path needs."""

HostPrediction = tuple[np.ndarray, np.ndarray, np.ndarray]


def fused_path_available(model: Sam, features: Optional[torch.Tensor]) -> bool:
    """True when ``model`` may decode prompts on ``features`` through the fused path.

    That needs: bf16/fp16 CUDA image features in the model's dtype and on its device, every op of
    the model on the ``auto`` backend, SAM's two-way transformer, and the kernels of
    :data:`FUSED_OPS` (built, registered, not disabled by ``PROMPTSEG_DISABLE_KERNELS``).
    """
    if features is None or not features.is_cuda or features.dtype not in (torch.bfloat16, torch.float16):
        return False
    decoder = model.mask_decoder
    if decoder.iou_token.weight.dtype != features.dtype or decoder.iou_token.weight.device != features.device:
        return False
    if any(getattr(module, "backend", "auto") != "auto" for module in model.modules()):
        return False
    transformer = decoder.transformer
    if not isinstance(transformer, TwoWayTransformer) or not transformer.layers[0].skip_first_layer_pe:
        return False
    return all(kernel_for(name, features) is not None for name in FUSED_OPS)


@dataclass
class ImageTable:
    """The prompt-independent inputs of the first two-way block, one row per image.

    Rows may also belong to single prompts that carry a mask input (see :func:`decode_masks`).
    N = H * W image tokens, C the transformer dim, Ci its attention dim.

    Attributes:
        features: (B, C, H, W) image embeddings.
        src: (B, N, C) image tokens plus the dense prompt embedding (``no_mask_embed`` for images).
        pos: (1, N, C) positional encoding of the image tokens.
        keys: (B, N, Ci) the first block's token->image keys, ``k_proj(src + pos)``.
        values: (B, N, Ci) its token->image values, ``v_proj(src)``.
        queries: (B, N, Ci) its image->token queries, ``q_proj(src + pos)``.
    """

    features: torch.Tensor
    src: torch.Tensor
    pos: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    queries: torch.Tensor

    @property
    def grid(self) -> tuple[int, int]:
        """(H, W) of the image embedding."""
        return self.features.shape[-2], self.features.shape[-1]


def image_table(model: Sam, features: torch.Tensor) -> ImageTable:
    """The :class:`ImageTable` of (B, C, H, W) image ``features`` (prompts without a mask input)."""
    dense = model.prompt_encoder.no_mask_dense_embeddings(features.shape[0])
    return _table_rows(model, features, dense)


def image_table_key(model: Sam, features: torch.Tensor) -> tuple:
    """Identity and version counter of every tensor :func:`image_table` reads: a cached table is
    stale once this changes (new features, weights replaced or updated in place)."""
    first = model.mask_decoder.transformer.layers[0]
    modules = (first.cross_attn_token_to_image, first.cross_attn_image_to_token, model.prompt_encoder)
    tensors = chain([features], *(chain(module.parameters(), module.buffers()) for module in modules))
    return tuple((tensor.data_ptr(), tensor._version) for tensor in tensors)


def _table_rows(model: Sam, features: torch.Tensor, dense: torch.Tensor) -> ImageTable:
    """Table rows of (B, C, H, W) ``features`` with (B, C, H, W) dense prompt embeddings, computed
    with the expressions of ``MaskDecoder.predict_masks`` and the first ``TwoWayAttentionBlock``."""
    first = model.mask_decoder.transformer.layers[0]
    src = (features + dense).flatten(2).permute(0, 2, 1)
    pos = model.prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1)
    src_with_pe = src + pos
    return ImageTable(
        features=features,
        src=src,
        pos=pos,
        keys=first.cross_attn_token_to_image.k_proj(src_with_pe),
        values=first.cross_attn_token_to_image.v_proj(src),
        queries=first.cross_attn_image_to_token.q_proj(src_with_pe),
    )


def _append_rows(table: ImageTable, rows: ImageTable) -> ImageTable:
    """``table`` followed by ``rows`` (the positional encoding is shared)."""
    joined = {field.name: torch.cat([getattr(table, field.name), getattr(rows, field.name)]) for field in fields(table)}
    joined["pos"] = table.pos
    return ImageTable(**joined)


def decode_masks(
    model: Sam,
    table: ImageTable,
    table_index: torch.Tensor,
    sparse: torch.Tensor,
    token_mask: Optional[torch.Tensor] = None,
    mask_images: Optional[torch.Tensor] = None,
    mask_embeddings: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.predict_masks`` for P prompts whose image-side inputs are rows of ``table``.

    Args:
        table: B image rows.
        table_index: (P,) int64 row of each prompt: its image's row, or B + i for the i-th prompt
            with a mask input.
        sparse: (P, T, C) prompt token embeddings.
        token_mask: (P, T) bool, False for padding tokens, or None.
        mask_images: (n,) int64 table rows of the images of the n prompts with a mask input.
        mask_embeddings: (n, C, H, W) dense embeddings of their mask inputs.
    Returns:
        (P, num_mask_tokens, 4H, 4W) mask logits and (P, num_mask_tokens) IoU predictions.
    """
    decoder = model.mask_decoder
    transformer = decoder.transformer
    if mask_embeddings is not None and mask_images is not None:
        table = _append_rows(table, _table_rows(model, table.features[mask_images], mask_embeddings))
    tokens, key_padding_mask = decoder.decoder_tokens(sparse, token_mask)

    # The first block (SAM skips the token positional encoding in its self-attention).
    first = transformer.layers[0]
    queries = first.norm1(first.self_attn(q=tokens, k=tokens, v=tokens, key_padding_mask=key_padding_mask))
    to_image = first.cross_attn_token_to_image
    attended = gathered_token_attention(
        to_image.q_proj(queries + tokens), table.keys, table.values, to_image.num_heads,
        kv_index=table_index, backend=to_image.backend,
    )
    queries = first.norm2(queries + to_image.out_proj(attended))
    queries = first.norm3(queries + first.mlp(queries))
    to_token = first.cross_attn_image_to_token
    attended = gathered_token_attention(
        table.queries, to_token.k_proj(queries + tokens), to_token.v_proj(queries), to_token.num_heads,
        key_padding_mask, q_index=table_index, backend=to_token.backend,
    )
    src = table.src if table.src.shape[0] == 1 else table.src[table_index]
    keys = first.norm4(src + to_token.out_proj(attended))

    hs, keys = transformer.run_layers(queries, keys, tokens, table.pos, key_padding_mask, first_layer=1)
    return decoder.masks_from_tokens(hs, keys, table.grid)


def _device_longs(values: Sequence[int], device: torch.device) -> torch.Tensor:
    """A (len(values),) int64 tensor on ``device``."""
    return host_to_device(np.asarray(values, dtype=np.int64).reshape(-1), device)


def decode_prompt_batch(
    model: Sam, table: ImageTable, prompt_rows: Sequence[int], batch: PromptBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt encoder and :func:`decode_masks` for a packed batch.

    Args:
        table: rows of the images the prompts belong to.
        prompt_rows: table row of each prompt's image, known on the host.
        batch: the prompts; ``batch.masked_prompts`` must list those with a mask input.
    Returns:
        (P, num_mask_tokens, 4H, 4W) mask logits and (P, num_mask_tokens) IoU predictions.
    """
    encoder = model.prompt_encoder
    device = batch.labels.device
    masked = batch.masked_prompts or []
    index = list(prompt_rows)
    for rank, prompt in enumerate(masked):
        index[prompt] = table.src.shape[0] + rank
    mask_images = mask_embeddings = None
    if masked:
        assert batch.mask_inputs is not None, "a batch with masked_prompts carries mask_inputs"
        mask_images = _device_longs([prompt_rows[prompt] for prompt in masked], device)
        mask_embeddings = encoder._embed_masks(batch.mask_inputs[_device_longs(masked, device)])
    return decode_masks(
        model,
        table,
        _device_longs(index, device),
        encoder.embed_tokens(batch.coords, batch.labels),
        batch.token_mask,
        mask_images,
        mask_embeddings,
    )


def select_outputs(
    masks: torch.Tensor, iou: torch.Tensor, multimask_output: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs ``MaskDecoder.forward`` returns: masks 1.. (multimask) or mask 0, and their IoU."""
    selected = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, selected], iou[:, selected]


def embed_points(
    encoder: PromptEncoder, coords: torch.Tensor, labels: torch.Tensor, frame_xy: torch.Tensor
) -> torch.Tensor:
    """``PromptEncoder.embed_tokens`` with the input frame size given as a device tensor.

    The model builds that (2,) tensor from Python numbers on every call, a host-to-device copy
    that CUDA graph capture does not allow; the arithmetic here is the same.

    Args:
        coords: (P, T, 2) float32 (x, y) in the padded input frame.
        labels: (P, T) int64 token labels.
        frame_xy: (2,) float32 (width, height) of the padded input frame.
    Returns:
        (P, T, C) embeddings in the model dtype.
    """
    encoding = encoder.pe_layer._pe_encoding((coords + 0.5).float() / frame_xy)
    encoding = encoding.masked_fill((labels == NOT_A_POINT)[..., None], 0.0)
    label_table = torch.cat([encoder.not_a_point_embed.weight] + [e.weight for e in encoder.point_embeddings])
    return (encoding + label_table.float()[labels.long() + 1]).to(encoder._dtype)


@dataclass
class _Bucket:
    """One prompt shape: static inputs, the captured graph (None when graphs are off), outputs."""

    frame_xy: torch.Tensor
    coords: torch.Tensor
    labels: torch.Tensor
    mask_input: Optional[torch.Tensor]
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    graph: Optional[torch.cuda.CUDAGraph]


class ClickGraphs:
    """Single-prompt predictions on one image, replayed from CUDA graphs captured per prompt shape.

    A bucket is (number of prompt tokens, mask input or not, multimask, return_logits, input size,
    original size); its first call captures a graph of the prompt encoder, :func:`decode_masks` and
    :func:`promptseg.ops.mask_postprocess`, later calls copy the prompt in and replay it. The image
    table lives in static buffers that a new image is copied into, so images of one size share
    their graphs. Graphs are dropped when the model's weights move (``.to()``, a new submodule);
    at most ``max_graphs`` are kept, least recently used first out.
    """

    def __init__(self, model: Sam, max_graphs: int = 8) -> None:
        self.model = model
        self.max_graphs = max_graphs
        self._buckets: OrderedDict[tuple, _Bucket] = OrderedDict()
        self._table: Optional[ImageTable] = None
        self._source: Optional[ImageTable] = None
        self._signature: tuple = ()

    @torch.no_grad()
    def predict(
        self,
        table: ImageTable,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: Optional[np.ndarray],
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
        multimask_output: bool,
        return_logits: bool,
        use_graphs: bool = True,
    ) -> HostPrediction:
        """Masks for one prompt, as ``SamPredictor.predict`` returns them.

        Args:
            table: the :class:`ImageTable` of the current image (one row).
            coords: (T, 2) token coordinates in the padded input frame.
            labels: (T,) int64 token labels.
            mask_input: (1, S, S) float32 low-res logits, or None.
            use_graphs: False runs the same computation eagerly (no capture).
        Returns:
            masks (C, H, W) bool (float32 with return_logits), scores (C,) and low-res logits
            (C, S, S) float32, as numpy arrays.
        """
        self._sync_model()
        self._load(table)
        key = (len(labels), mask_input is not None, multimask_output, return_logits, tuple(input_size), tuple(original_size))
        bucket = self._buckets.get(key)
        if bucket is None or (bucket.graph is None) == use_graphs:
            bucket = self._new_bucket(key, use_graphs)
        self._buckets.move_to_end(key)
        _copy_in(bucket.coords, coords[None].astype(np.float32))
        _copy_in(bucket.labels, labels[None].astype(np.int64))
        if bucket.mask_input is not None and mask_input is not None:
            _copy_in(bucket.mask_input, mask_input[None].astype(np.float32))
        if bucket.graph is not None:
            bucket.graph.replay()
        else:
            bucket.outputs = self._run(key, bucket)
        masks, scores, low_res = _to_host(bucket.outputs)
        return masks[0], scores[0], low_res[0]

    def _sync_model(self) -> None:
        """Forget graphs and buffers that were built on other weight tensors than the model's current ones."""
        modules = (self.model.prompt_encoder, self.model.mask_decoder)
        tensors = chain.from_iterable(chain(m.parameters(), m.buffers()) for m in modules)
        signature = tuple((t.data_ptr(), t.dtype, t.device) for t in tensors)
        if signature != self._signature:
            self._buckets.clear()
            self._table = self._source = None
            self._signature = signature

    def _load(self, table: ImageTable) -> None:
        """Copy ``table`` into the static buffers the graphs read (allocating them for a new shape)."""
        if table is self._source:
            return
        shapes = [getattr(table, field.name).shape for field in fields(table)]
        if self._table is None or shapes != [getattr(self._table, field.name).shape for field in fields(self._table)]:
            self._buckets.clear()
            self._table = ImageTable(**{field.name: getattr(table, field.name).clone() for field in fields(table)})
        else:
            for field in fields(table):
                getattr(self._table, field.name).copy_(getattr(table, field.name))
        self._source = table

    def _new_bucket(self, key: tuple, use_graphs: bool) -> _Bucket:
        """Static inputs for a bucket, and with ``use_graphs`` its graph (captured after a warm-up run)."""
        tokens, has_mask = key[0], key[1]
        device = self._table.src.device
        side = self.model.prompt_encoder.mask_input_size
        frame_h, frame_w = self.model.prompt_encoder.input_image_size
        bucket = _Bucket(
            frame_xy=torch.tensor([frame_w, frame_h], dtype=torch.float32, device=device),
            coords=torch.zeros(1, tokens, 2, device=device),
            labels=torch.full((1, tokens), NOT_A_POINT, dtype=torch.long, device=device),
            mask_input=torch.zeros(1, 1, *side, device=device) if has_mask else None,
            outputs=(),  # type: ignore[arg-type]
            graph=None,
        )
        if use_graphs:
            bucket.graph, bucket.outputs = _capture(lambda: self._run(key, bucket), device)
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_graphs:
            self._buckets.popitem(last=False)
        return bucket

    def _run(self, key: tuple, bucket: _Bucket) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompt encoder, decoder and post-processing of one bucket, on its static inputs."""
        _, has_mask, multimask_output, return_logits, input_size, original_size = key
        encoder = self.model.prompt_encoder
        device = bucket.coords.device
        sparse = embed_points(encoder, bucket.coords, bucket.labels, bucket.frame_xy)
        first_row = torch.zeros(1, dtype=torch.long, device=device)
        table_index = first_row + (1 if has_mask else 0)
        mask_embeddings = encoder._embed_masks(bucket.mask_input) if bucket.mask_input is not None else None
        masks, iou = decode_masks(self.model, self._table, table_index, sparse, None, first_row, mask_embeddings)
        low_res, iou = select_outputs(masks, iou, multimask_output)
        full = mask_postprocess(
            low_res, input_size, original_size, self.model.image_encoder.img_size,
            self.model.mask_threshold, return_logits,
        )
        return full.masks, iou.float(), low_res.float()


def _copy_in(static: torch.Tensor, values: np.ndarray) -> None:
    """Copy host ``values`` into the device tensor ``static`` without blocking the host."""
    static.copy_(torch.from_numpy(np.ascontiguousarray(values)).pin_memory(), non_blocking=True)


def _to_host(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Copy device tensors to pinned host memory; one synchronisation for all of them."""
    host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for target, source in zip(host, tensors):
        target.copy_(source, non_blocking=True)
    torch.cuda.current_stream(tensors[0].device).synchronize()
    return [target.numpy() for target in host]


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
