"""The model's one module-level decode (``Sam.decode_tokens``) and the gathered form of the two-way
blocks, against the modules they stand for, in float64."""

from __future__ import annotations

import pytest
import torch

from tests._support import TINY, model_pair, relative_error


@pytest.fixture(scope="module")
def tiny_float64():
    """A tiny promptseg SAM in float64."""
    _, model = model_pair(TINY, seed=3)
    return model.double()


def _first_block_inputs(count: int = 5, tokens: int = 7, rows: int = 3):
    """Float64 image-token rows, their positional encoding, tokens, their PE, an index and a padding mask."""
    generator = torch.Generator().manual_seed(11)

    def normal(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    padding = torch.ones(count, tokens, dtype=torch.bool)
    padding[1, -2:] = False
    index = torch.tensor([0, rows - 1, rows - 1, 1, 0][:count]) % rows
    return normal(rows, 256, 64), normal(1, 256, 64), normal(count, tokens, 64), normal(count, tokens, 64), index, padding


@pytest.mark.parametrize("rows", [1, 3])
def test_gathered_two_way_block_equals_the_module_block_in_float64(tiny_float64, rows):
    """``TwoWayAttentionBlock.image_side`` + ``forward_gathered`` equal the block on gathered rows, for the
    first block (no token PE in its self-attention) and a later one; and the transformer's gathered form
    equals its layers on the gathered rows."""
    transformer = tiny_float64.mask_decoder.transformer
    image, image_pos, queries, query_pe, index, padding = _first_block_inputs(rows=rows)
    with torch.no_grad():
        for block in transformer.layers:
            side = block.image_side(image, image_pos)
            actual = block.forward_gathered(queries, query_pe, image, side, index, padding)
            expected = block(queries, image[index], query_pe, image_pos, padding)
            for got, want in zip(actual, expected):
                assert got.shape == want.shape and relative_error(got, want) < 1e-12
        side = transformer.image_side(image, image_pos)
        actual = transformer.forward_gathered(queries, image, image_pos, side, index, padding)
        expected = transformer.run_layers(queries, image[index], queries, image_pos, padding)
    for got, want in zip(actual, expected):
        assert relative_error(got, want) < 1e-12
    first = transformer.layers[0]
    reads = {id(tensor) for tensor in transformer.image_side_tensors()}
    assert id(first.cross_attn_token_to_image.k_proj.weight) in reads and id(first.cross_attn_image_to_token.q_proj.bias) in reads


def test_decode_tokens_is_the_prompt_encoder_then_predict_masks(tiny_float64):
    """``Sam.decode_tokens``: embedded tokens + extra (text) tokens, dense embeddings, padding and an image index."""
    model = tiny_float64
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(2, 64, 16, 16, generator=generator, dtype=torch.float64)
    coords = torch.rand(4, 3, 2, generator=generator, dtype=torch.float64) * 256
    labels = torch.tensor([[1, 0, -1], [2, 3, -1], [1, 1, 0], [0, -1, -1]])
    extra = torch.randn(4, 2, 64, generator=generator, dtype=torch.float64)
    padding = torch.ones(4, 5, dtype=torch.bool)
    padding[3, 1:3] = False
    padding[0, 3:] = False
    index = torch.tensor([1, 0, 1, 1])
    mask_inputs = torch.randn(4, 1, 64, 64, generator=generator, dtype=torch.float64)
    has_mask = torch.tensor([True, False, False, True])
    encoder = model.prompt_encoder
    with torch.no_grad():
        dense = encoder.dense_embeddings(4, mask_inputs, has_mask)
        assert torch.equal(encoder.blended_dense_embeddings(mask_inputs, has_mask.double()), dense)
        for given_dense in (None, dense):
            masks, iou = model.decode_tokens(features, coords, labels, given_dense, index, extra, padding)
            sparse = torch.cat([encoder.embed_tokens(coords, labels), extra], dim=1)
            expected = model.mask_decoder.predict_masks(
                features, encoder.get_dense_pe(), sparse,
                encoder.no_mask_dense_embeddings(4) if given_dense is None else dense, index, padding,
            )
            assert torch.equal(masks, expected[0]) and torch.equal(iou, expected[1])
    assert masks.shape == (4, 4, 64, 64) and iou.shape == (4, 4)
