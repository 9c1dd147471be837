"""Concept vocabulary, object crops, text checks and concept encoders (issue 12; the captioned scene
generator: tests/datasets/test_concepts.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from promptseg.data.concepts import generate_concept_scene
from promptseg.text import COLOURS, FILLS, SHAPES, check_text, check_texts, object_crop, parse_query


# ---------------------------------------------------------------- vocabulary, crops and text checks
def test_vocabulary_covers_the_issue():
    assert set(COLOURS) >= {"red", "green", "blue", "yellow", "orange", "purple", "white", "black", "grey"}
    assert set(SHAPES) >= {"ellipse", "circle", "rectangle", "square", "triangle", "star", "ring", "stroke", "blob"}
    for rgb in COLOURS.values():
        assert len(rgb) == 3 and all(0 <= v <= 255 for v in rgb)


def test_parse_query_and_synonyms():
    assert parse_query("a small striped red star") == {"size": "small", "fill": "striped", "colour": "red", "shape": "star"}
    assert parse_query("Gray oval on the top left") == {"colour": "grey", "shape": "ellipse", "position": "top left"}
    assert parse_query("a wheel") == {}


def test_object_crop_is_square_and_padded():
    scene = generate_concept_scene(3)
    for mask in scene.masks:
        crop = object_crop(scene.image, mask)
        assert crop.dtype == np.uint8 and crop.ndim == 3 and crop.shape[0] == crop.shape[1]
    corner = np.zeros((256, 256), bool)
    corner[:10, :20] = True
    assert object_crop(scene.image, corner).shape == (24, 24, 3)
    with pytest.raises(ValueError, match="empty mask"):
        object_crop(scene.image, np.zeros((256, 256), bool))


def test_text_validation():
    assert check_texts(["red star"]) == ["red star"]
    with pytest.raises(TypeError, match="one string"):
        check_texts("red star")
    with pytest.raises(TypeError, match="int at index 1"):
        check_texts(["red star", 3])
    with pytest.raises(ValueError, match="empty list"):
        check_texts([])
    with pytest.raises(ValueError, match="non-empty"):
        check_texts(["  "])
    with pytest.raises(TypeError, match="one string"):
        check_text(["red star"])
    with pytest.raises(ValueError, match="non-empty"):
        check_text("")


# ---------------------------------------------------------------- the bundled concept encoder
from promptseg.data.concepts import CONCEPT_HELD_OUT_SEED  # noqa: E402
from promptseg.text import BundledConceptEncoder, ConceptEncoder, load_concept_encoder  # noqa: E402
from promptseg.train.concepts_eval import caption_retrieval  # noqa: E402

RETRIEVAL_SCENES = 100


@pytest.fixture(scope="module")
def bundled() -> BundledConceptEncoder:
    return load_concept_encoder("bundled")


def test_bundled_encoder_shapes_and_normalisation(bundled):
    assert isinstance(bundled, ConceptEncoder)
    text = bundled.encode_text(["red star", "a striped blue circle", "gray oval"])
    assert text.shape == (3, bundled.dim) and text.dtype == torch.float32
    torch.testing.assert_close(text.norm(dim=1), torch.ones(3))
    crops = [np.zeros((30, 50, 3), np.uint8), np.full((64, 64, 3), 200, np.uint8)]
    kept = [c.copy() for c in crops]
    images = bundled.encode_images(crops)
    assert images.shape == (2, bundled.dim) and images.dtype == torch.float32
    torch.testing.assert_close(images.norm(dim=1), torch.ones(2))
    for crop, copy in zip(crops, kept):
        np.testing.assert_array_equal(crop, copy)
    stacked = bundled.encode_images(torch.from_numpy(np.stack([crops[1], crops[1]])))
    torch.testing.assert_close(stacked, images[1:].expand(2, -1))
    # batching does not change an embedding
    torch.testing.assert_close(bundled.encode_text(["red star"]), text[:1])


def test_bundled_encoder_bad_input(bundled):
    with pytest.raises(TypeError, match="one string"):
        bundled.encode_text("red star")
    with pytest.raises(ValueError, match="non-empty"):
        bundled.encode_text([""])
    with pytest.raises(TypeError, match="at index 0"):
        bundled.encode_text([None])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 crop"):
        bundled.encode_images([np.zeros((8, 8), np.uint8)])
    with pytest.raises(TypeError, match="wrap it in a list"):
        bundled.encode_images(np.zeros((8, 8, 3), np.uint8))
    with pytest.warns(UserWarning, match="truncated") as caught:
        long = bundled.encode_text([" ".join(["red"] * (bundled.context_length + 5)) + " star"])
    assert long.shape == (1, bundled.dim)
    assert caught[0].filename == __file__, "the truncation warning should name the caller's line"


def test_bundled_encoder_file_round_trip(bundled, tmp_path):
    path = tmp_path / "concepts.safetensors"
    bundled.save(path)
    again = load_concept_encoder("bundled", checkpoint=path)
    torch.testing.assert_close(again.encode_text(["green ring"]), bundled.encode_text(["green ring"]))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_concept_encoder("bundled", checkpoint=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="backend must be one of"):
        load_concept_encoder("clip")
    with pytest.raises(ValueError, match="never downloads"):
        load_concept_encoder("open_clip", model="ViT-B-16")


def test_caption_retrieval_on_held_out_crops(bundled):
    """Acceptance: caption retrieval top-1 >= 0.8 on crops of held-out scenes (a seed training and validation never use).
    Measured 0.861 on 561 crops, 220 distinct captions (bundled encoder: 4,000 steps, 12 CPU minutes)."""
    scenes = [generate_concept_scene((CONCEPT_HELD_OUT_SEED, i)) for i in range(RETRIEVAL_SCENES)]
    result = caption_retrieval(bundled, scenes)
    print(f"\ncaption retrieval on held-out crops: top-1 {result['top1']:.3f} over {result['crops']} crops, "
          f"{result['captions']} distinct captions")
    assert result["top1"] >= 0.8


def test_colour_retrieval_on_held_out_crops(bundled):
    """What the bundled encoder does reliably: the colour word of a held-out crop (measured 0.95 on validation)."""
    scenes = [generate_concept_scene((CONCEPT_HELD_OUT_SEED, i)) for i in range(30)]
    crops = [object_crop(s.image, m) for s in scenes for m in s.masks]
    truth = [list(COLOURS).index(a.colour) for s in scenes for a in s.attributes]
    best = (bundled.encode_images(crops) @ bundled.encode_text(list(COLOURS)).T).argmax(1).numpy()
    accuracy = float((best == np.array(truth)).mean())
    print(f"\ncolour top-1 on {len(crops)} held-out crops: {accuracy:.3f}")
    assert accuracy >= 0.9


# ---------------------------------------------------------------- open_clip plumbing (random weights, no network)
OPEN_CLIP_ARCH = "ViT-S-32"  # the real architecture family of ViT-B-16 at a third of its size


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory):
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    model = open_clip.create_model(OPEN_CLIP_ARCH, pretrained=None)
    path = tmp_path_factory.mktemp("clip") / "open_clip_model.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model.eval(), path


def test_open_clip_backend_plumbing(clip_checkpoint):
    from promptseg.text import OpenClipConceptEncoder

    model, path = clip_checkpoint
    encoder = load_concept_encoder("open_clip", model=OPEN_CLIP_ARCH, checkpoint=path.parent)  # a folder works
    assert isinstance(encoder, OpenClipConceptEncoder) and encoder.context_length == 77
    texts = ["a red star", "a blue ring", "a grey blob"]
    text = encoder.encode_text(texts)
    assert text.shape == (3, encoder.dim) and text.dtype == torch.float32
    torch.testing.assert_close(text.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(encoder.encode_text(texts[1:2]), text[1:2], atol=1e-5, rtol=1e-4)  # batching
    crops = [np.random.default_rng(i).integers(0, 255, (40 + 10 * i, 50, 3), dtype=np.uint8) for i in range(3)]
    images = encoder.encode_images(crops)
    assert images.shape == (3, encoder.dim) and images.dtype == torch.float32
    torch.testing.assert_close(encoder.encode_images(crops[2:]), images[2:], atol=1e-5, rtol=1e-4)
    # the checkpoint round trip: the loaded encoder computes what the saved model computes
    import open_clip

    tokens = open_clip.get_tokenizer(OPEN_CLIP_ARCH)(texts)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1)
    torch.testing.assert_close(text, expected, atol=1e-5, rtol=1e-4)
    with pytest.warns(UserWarning, match="truncated"):
        encoder.encode_text(["red " * 100])


def test_find_instances_runs_on_the_open_clip_backend(clip_checkpoint):
    """find_instances takes any ConceptEncoder: here open_clip (random weights), over given proposals."""
    from promptseg import find_instances
    from promptseg.text import OpenClipConceptEncoder

    _, path = clip_checkpoint
    encoder = OpenClipConceptEncoder(OPEN_CLIP_ARCH, path)
    scene = generate_concept_scene(5)
    proposals = []
    for mask in scene.masks:
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        proposals.append({"segmentation": mask, "area": int(mask.sum()), "bbox": box, "predicted_iou": 1.0})
    found = find_instances(scene.image, "a red star", concept_encoder=encoder, threshold=-1.0, nms_thresh=1.0,
                           containment_thresh=1.0, proposals=proposals)
    assert len(found) == len(proposals) and all(-1.0 <= r["score"] <= 1.0 for r in found)


def test_open_clip_backend_errors(tmp_path):
    pytest.importorskip("open_clip")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_concept_encoder("open_clip", model="ViT-B-16", checkpoint=tmp_path / "missing.bin")
    with pytest.raises(FileNotFoundError, match="holds 0 weight files"):
        load_concept_encoder("open_clip", model="ViT-B-16", checkpoint=tmp_path)
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_concept_encoder("open_clip", model="ViT-Nope", checkpoint=tmp_path)


def test_missing_open_clip_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if it were not installed: importing it raises
    from promptseg.text.open_clip_backend import import_open_clip

    with pytest.raises(ImportError, match=r'pip install "promptseg\[clip\]"'):
        import_open_clip()


def test_info_lists_the_concept_model_and_vocabulary(capsys):
    from promptseg.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "concept_tiny_synthetic.safetensors" in out
    assert all(word in out for word in (*COLOURS, *SHAPES, *FILLS))


def test_cli_train_concepts_smoke(tmp_path):
    """``promptseg train --concepts`` trains a concept encoder of the bundled kind and writes a file it loads."""
    from promptseg.cli import main

    out = tmp_path / "run"
    arguments = ["train", "--concepts", "--scenes", "4", "--steps", "2", "--batch-size", "8", "--val-scenes", "2"]
    assert main([*arguments, "--out", str(out)]) == 0
    path = out / "concept_model.safetensors"
    encoder = load_concept_encoder("bundled", checkpoint=path)
    assert isinstance(encoder, BundledConceptEncoder)
    assert encoder.encode_text(["red star"]).shape == (1, encoder.dim)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        record = json.loads(handle.metadata()["training"])
    assert record["steps"] == 2 and record["train_scenes"] == 4 and record["batch_size"] == 8
