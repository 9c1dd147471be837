"""The SAM 2 modules' promptseg additions and rarely used options, on small random modules: the mask
decoder's ``image_index`` and ``token_padding_mask`` (for batched decoding), attention with ``kv_in_dim``
and dropout, Hiera's ``weights_path``, and ``SAM2Base.encode_image``."""

from __future__ import annotations

import torch

from promptseg.sam2 import build_sam2
from promptseg.sam2.modeling.backbones.hieradet import Hiera
from promptseg.sam2.modeling.sam.mask_decoder import MaskDecoder
from promptseg.sam2.modeling.sam.transformer import Attention, TwoWayTransformer

DIM = 32


def small_decoder() -> MaskDecoder:
    torch.manual_seed(0)
    transformer = TwoWayTransformer(depth=2, embedding_dim=DIM, num_heads=2, mlp_dim=64)
    return MaskDecoder(
        transformer_dim=DIM,
        transformer=transformer,
        use_high_res_features=True,
        iou_prediction_use_sigmoid=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        dynamic_multimask_via_stability=True,
    ).eval()


def test_image_index_and_padding_equal_separate_decodes():
    decoder = small_decoder()
    images = torch.randn(2, DIM, 8, 8)
    high_res = [torch.randn(2, DIM // 8, 32, 32), torch.randn(2, DIM // 4, 16, 16)]
    pe = torch.randn(1, DIM, 8, 8)
    dense = torch.randn(3, DIM, 8, 8)
    sparse = [torch.randn(1, 3, DIM), torch.randn(1, 1, DIM), torch.randn(1, 2, DIM)]
    image_of = [1, 0, 1]
    padded = torch.zeros(3, 3, DIM)
    valid = torch.zeros(3, 3, dtype=torch.bool)
    for row, tokens in enumerate(sparse):
        padded[row, : tokens.shape[1]] = tokens[0]
        valid[row, : tokens.shape[1]] = True
    with torch.no_grad():
        batched = decoder.predict_masks(
            images, pe, padded, dense, repeat_image=False, high_res_features=high_res,
            image_index=torch.tensor(image_of), token_padding_mask=valid,
        )
        for row, (tokens, image) in enumerate(zip(sparse, image_of)):
            single = decoder.predict_masks(
                images[image : image + 1], pe, tokens, dense[row : row + 1], repeat_image=True,
                high_res_features=[level[image : image + 1] for level in high_res],
            )
            for got, expected in zip(batched, single):
                torch.testing.assert_close(got[row : row + 1], expected, rtol=1e-5, atol=1e-5)


def test_select_masks():
    decoder = small_decoder()
    masks, iou = torch.randn(4, 4, 16, 16), torch.rand(4, 4)
    stable = torch.full((16, 16), 5.0)
    masks[0, 0] = stable  # stability 1: token 0 kept
    three, three_iou = decoder.select_masks(masks, iou, True)
    assert torch.equal(three, masks[:, 1:]) and torch.equal(three_iou, iou[:, 1:])
    one, one_iou = decoder.select_masks(masks, iou, False)
    assert torch.equal(one[0, 0], stable) and one_iou[0, 0] == iou[0, 0]
    best = iou[1, 1:].argmax() + 1
    assert torch.equal(one[1, 0], masks[1, best]) and one_iou[1, 0] == iou[1, best]
    decoder.train()
    assert torch.equal(decoder.select_masks(masks, iou, False)[0], masks[:, :1])


def test_attention_options():
    torch.manual_seed(0)
    q, kv = torch.randn(2, 5, DIM), torch.randn(2, 7, 16)
    attention = Attention(DIM, 2, downsample_rate=2, dropout=0.5, kv_in_dim=16).eval()
    assert attention.k_proj.in_features == 16 and attention(q, kv, kv).shape == (2, 5, DIM)
    attention.train()
    assert attention(q, kv, kv).shape == (2, 5, DIM)
    attention.dropout_p = 0.0
    torch.testing.assert_close(attention(q, kv, kv), attention.eval()(q, kv, kv))


def test_hiera_weights_path(tmp_path):
    options = {"embed_dim": 8, "num_heads": 1, "stages": (1, 1, 1, 1), "global_att_blocks": (3,)}
    trunk = Hiera(**options)
    with torch.no_grad():
        trunk.pos_embed.normal_()
    torch.save(trunk.state_dict(), tmp_path / "trunk.pt")
    loaded = Hiera(**options, weights_path=str(tmp_path / "trunk.pt"))
    assert torch.equal(loaded.pos_embed, trunk.pos_embed)


def test_encode_image_is_what_the_predictor_keeps():
    torch.manual_seed(0)
    small = ["model.image_size=256"]
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu", hydra_overrides_extra=small)
    images = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        embed, high_res = model.encode_image(images)
        backbone = model.forward_image(images)
    assert embed.shape == (2, 256, 16, 16) and [f.shape[1:] for f in high_res] == [(32, 64, 64), (64, 32, 32)]
    torch.testing.assert_close(embed, backbone["vision_features"] + model.no_mem_embed.view(1, -1, 1, 1))
    for ours, theirs in zip(high_res, backbone["backbone_fpn"][:2]):
        assert torch.equal(ours, theirs)
