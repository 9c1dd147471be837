"""The model shipped in the package, scored on 300 held-out synthetic scenes (a seed training never used)."""

from __future__ import annotations

import pytest
import torch

from promptseg.bundled import BUNDLED_MODEL_TYPE, build_bundled_sam, bundled_checkpoint
from promptseg.data.synthetic import HELD_OUT_SEED, TRAIN_SEED, VALIDATION_SEED, SyntheticScenes
from promptseg.train.evaluate import evaluate

# The targets (single click >= 0.85, box >= 0.90). The shipped model does not reach them
# yet: it was trained for 5000 updates on a 2-core CPU (promptseg/weights/MODEL_CARD.md has the
# measured numbers). strict=True: a model that meets a target turns its test into a failure until
# this marker is removed.
BELOW_TARGET = pytest.mark.xfail(
    strict=True, reason="shipped model measures single click 0.679, box 0.773 on this set; see MODEL_CARD.md"
)


@pytest.fixture(scope="module")
def held_out_result():
    assert HELD_OUT_SEED not in (TRAIN_SEED, VALIDATION_SEED)
    return evaluate(build_bundled_sam(), SyntheticScenes(300, seed=HELD_OUT_SEED), corrective_rounds=3)


def test_bundled_weights_are_small_safetensors():
    path = bundled_checkpoint()
    assert path.suffix == ".safetensors"
    assert path.stat().st_size <= 25 * 1024 * 1024


def test_held_out_set_has_enough_instances(held_out_result):
    assert held_out_result.instances >= 900


def test_shipped_model_keeps_its_measured_accuracy(held_out_result):
    """Guards the shipped weights and the evaluation path (a broken model would also "xfail" the
    target tests): floors a little below the measured 0.679 / 0.773."""
    assert held_out_result.point_miou >= 0.65, held_out_result
    assert held_out_result.box_miou >= 0.75, held_out_result


@BELOW_TARGET
def test_single_click_miou(held_out_result):
    assert held_out_result.point_miou >= 0.85, held_out_result


@BELOW_TARGET
def test_box_miou(held_out_result):
    assert held_out_result.box_miou >= 0.90, held_out_result


def test_corrective_clicks_improve_monotonically(held_out_result):
    rounds = held_out_result.corrective_miou
    assert len(rounds) == 4
    assert all(later > earlier for earlier, later in zip(rounds, rounds[1:])), rounds


def test_bundled_model_loads_into_the_official_model():
    pytest.importorskip("segment_anything")
    import segment_anything.modeling
    from safetensors.torch import load_file

    from promptseg.build import construct_sam
    from promptseg.configs import CONFIGS

    official = construct_sam(CONFIGS[BUNDLED_MODEL_TYPE], modeling=segment_anything.modeling)
    official.load_state_dict(load_file(str(bundled_checkpoint())), strict=True)
    assert all(torch.isfinite(p).all() for p in official.parameters())
