"""Text says what it understood (issue 23): words outside the concept vocabulary are named, a phrase
with none the encoder knows is refused, and an open-vocabulary encoder's "no match" comes from its
own score statistics (promptseg.text.matching)."""

from __future__ import annotations

import json
import warnings
import zlib

import numpy as np
import pytest
import torch

from promptseg import SamPredictor, find_instances
from promptseg.cli import main
from promptseg.data.concepts import generate_concept_scene
from promptseg.errors import UnknownTextError
from promptseg.text import ConceptEncoder, load_concept_encoder, load_text_model
from promptseg.text.matching import DEFAULT_MATCH_Z, NULL_TEXTS, match_z_scores
from promptseg.text.understanding import UnknownWordsWarning, understood_text


@pytest.fixture(scope="module")
def bundled():
    return load_concept_encoder("bundled")


@pytest.fixture(scope="module")
def text_predictor():
    sam, text = load_text_model()
    predictor = SamPredictor(sam, text=text)
    predictor.set_image(generate_concept_scene(7).image)
    return predictor


# ------------------------------------------------------------------ the vocabulary
def test_unknown_words_are_named_in_a_warning(bundled):
    """Guards against: "pink circle" silently giving the mask of "circle"."""
    with pytest.warns(UnknownWordsWarning, match=r"'pink' is outside the vocabulary .* understood: circle"):
        reading = understood_text(bundled, "pink circle")
    assert reading.known == ("circle",) and reading.unknown == ("pink",) and not reading.open_vocabulary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert understood_text(bundled, "a Gray oval, on the left").known == ("grey", "ellipse", "left")


@pytest.mark.parametrize("text", ["qwerty", "qwerty asdf", "the", "a thing on the"])
def test_a_phrase_with_no_known_word_is_refused(bundled, text):
    """Guards against: "qwerty" giving a confident mask (0.70, above a real "blue star")."""
    with pytest.raises(UnknownTextError, match="no word that the concept encoder .* knows") as caught:
        understood_text(bundled, text)
    assert "It knows: red, green" in str(caught.value) and isinstance(caught.value, ValueError)


def test_text_prompts_say_what_they_understood(text_predictor):
    with pytest.raises(UnknownTextError, match="'qwerty' is outside its vocabulary"):
        text_predictor.predict(text="qwerty", multimask_output=False)
    with pytest.warns(UnknownWordsWarning, match="'pink'"):
        pink, _, _ = text_predictor.predict(text="pink circle", multimask_output=False)
    circle, _, _ = text_predictor.predict(text="circle", multimask_output=False)
    np.testing.assert_array_equal(pink, circle)  # the same mask, and now the user is told why


def test_find_refuses_a_query_it_cannot_read(bundled):
    image = generate_concept_scene(3).image
    with pytest.raises(UnknownTextError):
        find_instances(image, "qwerty", concept_encoder=bundled, proposals=[])


def test_cli_find_qwerty_is_an_error_and_no_match_writes_a_loadable_coco_file(tmp_path, capsys):
    """Guards against: `find --text qwerty` reporting 4 instances, and `[]` that pycocotools cannot load."""
    coco = pytest.importorskip("pycocotools.coco")
    folder = tmp_path / "images"
    folder.mkdir()
    from PIL import Image

    for seed in (1, 2):
        Image.fromarray(generate_concept_scene(seed).image).save(folder / f"scene{seed}.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["find", str(folder), "--text", "qwerty", "--out", str(tmp_path / "q")])
    assert exit_info.value.code == 2 and "'qwerty' is outside its vocabulary" in capsys.readouterr().err
    out = tmp_path / "none"
    assert main(["find", str(folder), "--text", "red star", "--threshold", "1.01", "--out", str(out),
                 "--points-per-side", "4"]) == 0
    assert "no instances of 'red star' in 2 image(s)" in capsys.readouterr().out
    results = coco.COCO(str(out / "results.json"))
    assert results.getAnnIds() == [] and len(results.getImgIds()) == 2
    assert json.loads((out / "annotations.json").read_text())["annotations"] == []


def test_cli_warns_once_about_unknown_words(tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "scene.png"
    Image.fromarray(generate_concept_scene(4).image).save(image)
    assert main(["find", str(image), "--text", "pink circle", "--out", str(tmp_path / "out"), "--points-per-side", "4"]) == 0
    err = capsys.readouterr().err
    assert err.count("promptseg: warning: --text 'pink circle': 'pink' is outside the vocabulary") == 1


# ------------------------------------------------------------------ open vocabulary: "no match"
class MadeUpEncoder(ConceptEncoder):
    """An open-vocabulary encoder whose answers are known: "red thing" points along axis 0 and so does
    a red crop; every other text is a fixed random direction, every other crop axis 1."""

    context_length, name = 8, "made-up open-vocabulary encoder"

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.dim = dim

    def tokenize(self, texts):
        return torch.tensor([[zlib.crc32(text.encode())] for text in texts]), [False] * len(texts)

    def text_features(self, tokens):
        rows = []
        for (code,) in tokens.tolist():
            if code == zlib.crc32(b"red thing"):
                rows.append(torch.eye(self.dim)[0])
            else:
                rows.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(code)))
        return torch.stack(rows)

    def preprocess(self, crops):
        return torch.stack([torch.from_numpy(crop.reshape(-1, 3).mean(0)) for crop in crops]).float()

    def image_features(self, pixels):
        red = (pixels[:, 0] > 150) & (pixels[:, 1] < 100)
        return torch.where(red[:, None], torch.eye(self.dim)[0], torch.eye(self.dim)[1])


def _squares():
    """A 64 x 192 image of a red, a green and a red square, and a proposal for each."""
    image = np.zeros((64, 192, 3), np.uint8)
    proposals = []
    for index, colour in enumerate([(220, 30, 30), (40, 170, 50), (220, 30, 30)]):
        x = index * 64
        image[8:56, x + 8 : x + 56] = colour
        mask = np.zeros((64, 192), bool)
        mask[8:56, x + 8 : x + 56] = True
        proposals.append({"segmentation": mask, "area": int(mask.sum()), "bbox": [x + 8, 8, 48, 48], "predicted_iou": 1.0})
    return image, proposals


def test_match_z_scores_follow_the_null_spread():
    null = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.1, 0.2]])  # per crop mean 0.2 / 0.1, spread 0.1
    z = match_z_scores(torch.tensor([0.5, 0.1]), null)
    torch.testing.assert_close(z, torch.tensor([3.0, 0.0]))
    with pytest.raises(ValueError, match="at least 2 null texts"):
        match_z_scores(torch.zeros(2), torch.zeros(2, 1))
    assert len(NULL_TEXTS) >= 8 and DEFAULT_MATCH_Z == 3.0


def test_open_vocabulary_no_match_comes_from_the_calibrated_rule():
    """Guards against: an open-vocabulary encoder finding instances of any phrase at all."""
    encoder = MadeUpEncoder()
    image, proposals = _squares()
    found = find_instances(image, "red thing", concept_encoder=encoder, proposals=proposals, nms_thresh=1.0)
    assert sorted(record["bbox"][0] for record in found) == [8, 136]  # the red squares, not the green one
    for phrase in ("qwerty", "a purple elephant"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any text is valid: no vocabulary warning
            assert find_instances(image, phrase, concept_encoder=encoder, proposals=proposals) == []
    # an absolute threshold replaces the rule (the caller calibrated it)
    assert len(find_instances(image, "qwerty", concept_encoder=encoder, proposals=proposals, threshold=-1.0,
                              nms_thresh=1.0, containment_thresh=1.0)) == 3
    # a lower cut-off of the rule keeps more
    loose = find_instances(image, "qwerty", concept_encoder=encoder, proposals=proposals, match_z=-10.0,
                           nms_thresh=1.0, containment_thresh=1.0)
    assert len(loose) == 3


def test_masks_match_by_the_calibrated_rule():
    from promptseg.text.matching import masks_match

    image, proposals = _squares()
    masks = [proposal["segmentation"] for proposal in proposals] + [np.zeros((64, 192), bool)]
    matches, z = masks_match(MadeUpEncoder(), image, masks, "red thing")
    assert matches.tolist() == [True, False, True, False] and z[3] == -np.inf and z[0] > DEFAULT_MATCH_Z


def test_cli_predict_with_open_vocabulary_text_says_no_match(tmp_path, capsys, monkeypatch):
    """Guards against: an open-vocabulary text prompt always answering with a mask, whatever the text."""
    import promptseg.cli.common
    from PIL import Image

    from promptseg.text import TextPrompting

    def made_up_text_model(args):
        sam, text = load_text_model()
        return sam, TextPrompting(MadeUpEncoder(text.prompt_encoder.concept_dim), text.prompt_encoder), "made up"

    monkeypatch.setattr(promptseg.cli.common, "load_text_model_from_args", made_up_text_model)
    image = tmp_path / "squares.png"
    Image.fromarray(np.zeros((96, 96, 3), np.uint8)).save(image)  # nothing red: nothing is a "red thing"
    assert main(["predict", str(image), "--text", "red thing", "--out", str(tmp_path / "out")]) == 0
    assert "no match for 'red thing'" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "result.json").read_text())["masks"] == []


def test_random_weight_open_clip_rarely_matches(tmp_path):
    """Random weights know no concept, so every match is a false one: under the calibrated rule they
    are rare (a fixed 0.25 would mean nothing on this encoder's scale). Guards against: an
    open-vocabulary "no match" that never says no."""
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    from promptseg.find import embed_proposals
    from promptseg.text import OpenClipConceptEncoder
    from promptseg.text.matching import null_text_scores

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-S-32", pretrained=None)
    path = tmp_path / "open_clip_model.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    encoder = OpenClipConceptEncoder("ViT-S-32", path)
    assert encoder.open_vocabulary and understood_text(encoder, "qwerty").open_vocabulary
    matched = crops = 0
    for seed in range(6):
        scene = generate_concept_scene(seed)
        proposals = []
        for mask in scene.masks:
            ys, xs = np.nonzero(mask)
            box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            proposals.append({"segmentation": mask, "area": int(mask.sum()), "bbox": box, "predicted_iou": 1.0})
        embedded = embed_proposals(scene.image, proposals, encoder)
        null = null_text_scores(encoder, embedded)
        for phrase in ("qwerty", scene.caption(0), "a photo of a dog", "red", "xylophone"):
            z = match_z_scores((embedded @ encoder.encode_text([phrase]).T)[:, 0], null)
            matched, crops = matched + int((z >= DEFAULT_MATCH_Z).sum()), crops + len(z)
        found = find_instances(scene.image, "qwerty", concept_encoder=encoder, proposals=proposals,
                               nms_thresh=1.0, containment_thresh=1.0)
        assert len(found) == int((match_z_scores(
            (embedded @ encoder.encode_text(["qwerty"]).T)[:, 0], null) >= DEFAULT_MATCH_Z).sum())
    assert matched <= 0.02 * crops, f"{matched} of {crops} crops matched"


def test_a_bad_open_clip_checkpoint_is_a_checkpoint_error(tmp_path):
    pytest.importorskip("open_clip")
    from promptseg.errors import CheckpointError
    from promptseg.text import OpenClipConceptEncoder

    for data in (b"", b"\x00" * 64):
        path = tmp_path / "open_clip_model.safetensors"
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=str(path)):
            OpenClipConceptEncoder("ViT-S-32", path)
