"""The fused decoder: the model's arithmetic, grouped so that prompts share their image's work.

Two things differ from running the model's modules as they are; the arithmetic does not:

* Hoisting. What the first two-way block computes from the image alone (the image tokens plus
  the no-mask embedding, their token->image keys and values, their image->token queries:
  ``TwoWayTransformer.image_side``) is computed once per image (:func:`image_table`) instead of
  once per prompt.
* Sharing. P prompts read those rows through an index (``TwoWayTransformer.forward_gathered``,
  over ``promptseg.ops.gathered_token_attention``) instead of P copies; a prompt with a mask input
  gets rows of its own, appended to the table. After the first block every prompt has its own
  image tokens, and the model's modules run on.

The arithmetic itself is the model's public methods (``Sam.embed_prompt_tokens``,
``MaskDecoder.decoder_tokens``, the gathered form of the first block, ``MaskDecoder.masks_from_tokens``);
this module only builds and caches the table and routes prompts to its rows.

Every module and weight is the model's own. On CUDA bf16/fp16 with the compiled extension the
attention runs promptseg's kernels, and :meth:`FusedDecoder.postprocess` the one-pass
post-processing kernel; elsewhere the same code runs the ops' PyTorch references (the CPU
float64 tests check it against the model there).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import chain
from typing import Optional, Sequence

import torch

from promptseg.decoders.base import DecodeResult, ModelDecoder, device_longs, select_outputs
from promptseg.modeling import Sam, TwoWayTransformer
from promptseg.modeling.transformer import ImageSide
from promptseg.ops import kernel_available, module_backend
from promptseg.prompts.batch import PromptBatch

FUSED_OPS = ("token_attention", "gathered_token_attention", "mask_postprocess")
"""Kernels the fused decoder is chosen for (see :func:`fused_path_available`)."""


def fused_path_available(model: Sam, features: Optional[torch.Tensor], ops: Sequence[str] = FUSED_OPS) -> bool:
    """True when the fused decoder runs promptseg's kernels for ``model`` on ``features``.

    That needs: bf16/fp16 CUDA image features in the model's dtype and on its device, no op of the
    model on the ``reference`` backend, SAM's two-way transformer (which has the gathered form of
    its first block; SAM 2's is a subclass), and the kernels ``ops`` (default :data:`FUSED_OPS`)
    available on the model's backend (built, registered, in force: opted in or verified by a GPU
    record, not disabled by ``PROMPTSEG_DISABLE_KERNELS`` or a failed self-check;
    :func:`promptseg.ops.kernel_available`).
    """
    if features is None or not features.is_cuda or features.dtype not in (torch.bfloat16, torch.float16):
        return False
    if model.dtype != features.dtype or model.device != features.device:
        return False
    backend = module_backend(model)
    if backend == "reference":
        return False
    if not isinstance(model.mask_decoder.transformer, TwoWayTransformer):
        return False
    return all(kernel_available(name, features, backend=backend) for name in ops)


def cpu_hoisting_applies(model: Sam, features: Optional[torch.Tensor]) -> bool:
    """True where the fused decoder pays on the CPU without kernels: float32 CPU image features of a
    float32 CPU model with SAM's two-way transformer, no op of its mask decoder on the ``reference``
    backend.

    There the fused decoder runs the ops' CPU paths (``promptseg.ops.cpu_token_attention``), and
    its hoisting saves three of the eight (N, C) x (C, Ci) image-token projections of each prompt
    (vit_b: 3 x 134 M multiply-adds); the results equal the module decoder's to float32 rounding.
    """
    if features is None or features.device.type != "cpu" or features.dtype != torch.float32:
        return False
    if model.dtype != torch.float32 or model.device.type != "cpu":
        return False
    decoder = model.mask_decoder  # (only the decoder's ops: a scan of the whole model costs ~3 ms per click)
    return module_backend(decoder) != "reference" and isinstance(decoder.transformer, TwoWayTransformer)


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

    @property
    def rows(self) -> int:
        return self.src.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fields by name."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @property
    def image_side(self) -> ImageSide:
        """The first block's projections of the rows, as ``TwoWayTransformer.forward_gathered`` takes them."""
        return ImageSide(self.keys, self.values, self.queries)


def image_table(model: Sam, features: torch.Tensor) -> ImageTable:
    """The :class:`ImageTable` of (B, C, H, W) image ``features`` (prompts without a mask input).

    ``model`` is a SAM or a SAM 2 model (whose ``prompt_encoder`` / ``mask_decoder`` are SAM's heads)."""
    dense = model.prompt_encoder.no_mask_dense_embeddings(features.shape[0])
    return table_rows(model, features, dense)


def image_table_key(model: Sam, features: torch.Tensor) -> Optional[tuple]:
    """Identity and version counter of every tensor :func:`image_table` reads: a cached table is
    stale once this changes (new features, weights replaced or updated in place). None when one of
    them is an inference tensor (made under ``torch.inference_mode``), which has no version counter:
    such a table cannot be checked, so it is not cached."""
    encoder = model.prompt_encoder
    tensors = list(
        chain([features], encoder.parameters(), encoder.buffers(), model.mask_decoder.transformer.image_side_tensors())
    )
    if any(tensor.is_inference() for tensor in tensors):
        return None
    return tuple((tensor.data_ptr(), tensor._version) for tensor in tensors)


class ImageTableCache:
    """The :class:`ImageTable` of the last features a decoder saw, rebuilt when the features or the
    weights it reads change (:func:`image_table_key`); never kept when that key is None."""

    def __init__(self, model: Sam) -> None:
        self.model = model
        self._cached: Optional[tuple[tuple, ImageTable]] = None

    def prepare(self, features: torch.Tensor) -> None:
        """Build and keep the table of ``features`` now, when it can be cached (not under inference mode)."""
        key = image_table_key(self.model, features)
        if key is not None:
            self._lookup(features, key)

    def get(self, features: torch.Tensor) -> ImageTable:
        """The table of (B, C, H, W) ``features``, from the cache when still valid."""
        return self._lookup(features, image_table_key(self.model, features))

    def _lookup(self, features: torch.Tensor, key: Optional[tuple]) -> ImageTable:
        """The cached table when ``key`` (:func:`image_table_key` of ``features``) matches, else a new one,
        kept unless ``key`` is None."""
        if key is not None and self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        self._cached = None  # free the old table before building the new one
        table = image_table(self.model, features)
        if key is not None:
            self._cached = (key, table)
        return table


def table_rows(model: Sam, features: torch.Tensor, dense: torch.Tensor) -> ImageTable:
    """Table rows of (B, C, H, W) ``features`` with (B, C, H, W) dense prompt embeddings: the image
    tokens and positional encoding as ``MaskDecoder.predict_masks`` builds them, and
    ``TwoWayTransformer.image_side`` of those."""
    src = (features + dense).flatten(2).permute(0, 2, 1)
    pos = model.prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1)
    keys, values, queries = model.mask_decoder.transformer.image_side(src, pos)
    return ImageTable(features=features, src=src, pos=pos, keys=keys, values=values, queries=queries)


def append_rows(table: ImageTable, rows: ImageTable) -> ImageTable:
    """``table`` followed by ``rows`` (the positional encoding is shared)."""
    joined = {name: torch.cat([tensor, getattr(rows, name)]) for name, tensor in table.tensors().items()}
    joined["pos"] = table.pos
    return ImageTable(**joined)


def transform_gathered(
    model: Sam,
    table: ImageTable,
    table_index: torch.Tensor,
    sparse: torch.Tensor,
    token_mask: Optional[torch.Tensor] = None,
    mask_images: Optional[torch.Tensor] = None,
    mask_embeddings: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """The two-way transformer of ``MaskDecoder.predict_masks`` for P prompts whose image-side inputs
    are rows of ``table`` (arguments as :func:`decode_masks`).

    Returns:
        (P, S + T, C) processed tokens, (P, H*W, C) processed image tokens and the (H, W) grid, for
        ``MaskDecoder.masks_from_tokens``.
    """
    decoder = model.mask_decoder
    if mask_embeddings is not None and mask_images is not None:
        table = append_rows(table, table_rows(model, table.features[mask_images], mask_embeddings))
    tokens, key_padding_mask = decoder.decoder_tokens(sparse, token_mask)
    hs, keys = decoder.transformer.forward_gathered(
        tokens, table.src, table.pos, table.image_side, table_index, key_padding_mask
    )
    return hs, keys, table.grid


def decode_masks(
    model: Sam,
    table: ImageTable,
    table_index: torch.Tensor,
    sparse: torch.Tensor,
    token_mask: Optional[torch.Tensor] = None,
    mask_images: Optional[torch.Tensor] = None,
    mask_embeddings: Optional[torch.Tensor] = None,
) -> DecodeResult:
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
    hs, keys, grid = transform_gathered(model, table, table_index, sparse, token_mask, mask_images, mask_embeddings)
    return model.mask_decoder.masks_from_tokens(hs, keys, grid)


@dataclass
class GatheredPrompts:
    """A packed batch as :func:`decode_masks` takes it (see there for the fields)."""

    table_index: torch.Tensor
    sparse: torch.Tensor
    token_mask: Optional[torch.Tensor]
    mask_images: Optional[torch.Tensor]
    mask_embeddings: Optional[torch.Tensor]

    def transform(self, model: Sam, table: ImageTable) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """:func:`transform_gathered` of these prompts on ``table``."""
        return transform_gathered(
            model, table, self.table_index, self.sparse, self.token_mask, self.mask_images, self.mask_embeddings
        )


def gather_prompts(model: Sam, table_size: int, prompt_rows: Sequence[int], batch: PromptBatch) -> GatheredPrompts:
    """The prompt encoder's work for a packed batch, and the table row of each prompt.

    Args:
        table_size: rows of the image table (a prompt with a mask input gets row
            ``table_size + i``).
        prompt_rows: table row of each prompt's image, known on the host.
        batch: the prompts; ``batch.masked_prompts`` must list those with a mask input.
    """
    device = batch.labels.device
    masked = batch.masked_prompts or []
    index = list(prompt_rows)
    for rank, prompt in enumerate(masked):
        index[prompt] = table_size + rank
    mask_images = mask_embeddings = None
    if masked:
        if batch.mask_inputs is None:
            raise ValueError("a PromptBatch that lists masked_prompts must carry mask_inputs")
        mask_images = device_longs([prompt_rows[prompt] for prompt in masked], device)
        mask_embeddings = model.prompt_encoder.embed_masks(batch.mask_inputs[device_longs(masked, device)])
    return GatheredPrompts(
        table_index=device_longs(index, device),
        sparse=model.embed_prompt_tokens(batch.coords, batch.labels, batch.extra_tokens),
        token_mask=batch.token_mask,
        mask_images=mask_images,
        mask_embeddings=mask_embeddings,
    )


def decode_prompt_batch(model: Sam, table: ImageTable, prompt_rows: Sequence[int], batch: PromptBatch) -> DecodeResult:
    """Prompt encoder and :func:`decode_masks` for a packed batch (see :func:`gather_prompts`).

    Returns:
        (P, num_mask_tokens, 4H, 4W) mask logits and (P, num_mask_tokens) IoU predictions.
    """
    hs, keys, grid = gather_prompts(model, table.rows, prompt_rows, batch).transform(model, table)
    return model.mask_decoder.masks_from_tokens(hs, keys, grid)


class FusedDecoder(ModelDecoder):
    """Decodes through :func:`decode_masks`, with the image table of the last features cached.

    The table holds every row of the features it was built from (about 2.5 times their memory),
    and is rebuilt when the features or the weights it reads change (:class:`ImageTableCache`; under
    ``torch.inference_mode`` it is built for each call).
    """

    def __init__(self, model: Sam) -> None:
        self.model = model
        self._tables = ImageTableCache(model)

    def table(self, features: torch.Tensor) -> ImageTable:
        """The :class:`ImageTable` of (B, C, H, W) ``features``, from the cache when still valid."""
        return self._tables.get(features)

    @torch.no_grad()
    def prepare(self, features: torch.Tensor) -> None:
        self._tables.prepare(features)

    @torch.no_grad()
    def decode(
        self, features: torch.Tensor, batch: PromptBatch, image_index: Sequence[int], multimask_output: bool
    ) -> DecodeResult:
        masks, iou = decode_prompt_batch(self.model, self.table(features), image_index, batch)
        return select_outputs(masks, iou, multimask_output)
