"""The bundled text weights, measured on held-out captioned scenes, and the text commands.

Held-out scenes are ``generate_concept_scene((CONCEPT_HELD_OUT_SEED, i))``; text training draws
``(TEXT_TRAIN_SEED, i)`` and validates on ``(TEXT_VALIDATION_SEED, i)`` (see promptseg.train.text).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from promptseg.cli import main
from promptseg.data.concepts import CONCEPT_HELD_OUT_SEED, generate_concept_scene
from promptseg.predictor import SamPredictor
from promptseg.text import load_text_model, read_text_checkpoint
from promptseg.text.prompting import bundled_text_checkpoint
from promptseg.train.text import TEXT_TRAIN_SEED, TEXT_VALIDATION_SEED
from promptseg.train.text_eval import evaluate_text_prompts

HELD_OUT_SCENES = 40


@pytest.fixture(scope="module")
def metrics():
    sam, text = load_text_model()
    predictor = SamPredictor(sam, text=text)
    scenes = [generate_concept_scene((CONCEPT_HELD_OUT_SEED, i)) for i in range(HELD_OUT_SCENES)]
    result = evaluate_text_prompts(predictor, scenes)
    print(f"\nbundled text model on {HELD_OUT_SCENES} held-out scenes: {result.as_dict()}")
    return result


def test_held_out_seed_is_never_trained_on():
    assert CONCEPT_HELD_OUT_SEED not in (TEXT_TRAIN_SEED, TEXT_VALIDATION_SEED)
    stored = json.loads(read_text_checkpoint(bundled_text_checkpoint()).extra["train_config"])
    assert stored["scenes"] > 0 and stored["val_scenes"] > 0  # drawn from the two seeds above only


@pytest.mark.xfail(
    strict=True,
    reason="measured text-only mIoU 0.219 on 183 objects of 40 held-out scenes (bundled text weights: 2400 updates, "
    "21 CPU minutes); masks find their object in part and spill onto others",
)
def test_text_only_mask_miou(metrics):
    assert metrics.text_objects >= 100
    assert metrics.text_miou >= 0.55, f"text-only mIoU {metrics.text_miou:.3f} on {metrics.text_objects} objects"


def test_text_with_a_click_picks_the_named_level(metrics):
    assert metrics.level_cases >= 20
    assert metrics.level_accuracy >= 0.7, (
        f"text + click picked the named level in {metrics.level_accuracy:.3f} of {metrics.level_cases} cases "
        f"(the click alone gives the whole in {metrics.click_alone_whole_share:.3f} of pairs)"
    )


def test_cli_predict_text(tmp_path):
    assert main(["predict", "--synthetic-scene", "5", "--text", "red ellipse", "--point", "100,100", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["prompt"]["text"] == "red ellipse" and len(result["masks"]) == 1
    assert (tmp_path / "overlay.png").is_file()


def test_cli_train_text_smoke(tmp_path):
    out = tmp_path / "run"
    arguments = ["train", "--text", "--scenes", "2", "--text-val-scenes", "1", "--steps", "2", "--objects-per-step", "2",
                 "--text-only-multimask"]
    assert main([*arguments, "--out", str(out)]) == 0
    sam, text = load_text_model(out / "text_model.safetensors")
    assert json.loads(read_text_checkpoint(out / "text_model.safetensors").extra["train_config"])["text_only_multimask"]
    predictor = SamPredictor(sam, text=text)
    predictor.set_image(generate_concept_scene((CONCEPT_HELD_OUT_SEED, 0)).image)
    masks, scores, _ = predictor.predict(text="plain red ellipse", multimask_output=False)
    assert masks.shape == (1, 256, 256) and np.isfinite(scores).all()


def test_cli_predict_text_without_text_weights(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--synthetic-scene", "5", "--text", "red ellipse", "--model", "vit_b", "--out", str(tmp_path)])
    assert "needs text weights" in capsys.readouterr().err
