"""Issue 25's CPU speed targets that the bundled model misses, as strict expected failures with the
measured values (``benchmarks/results/cpu_amd_epyc.json``, idle machine, 2 threads; ``benchmarks/NOTES.md``,
CPU). The ratios are promptseg's default path over the official package, same weights, same image,
timed in interleaved rounds (medians): a loaded CI machine slows both alike, and the measured ratios
sit far above the targets, so noise cannot make these pass by chance. Each fails, as expected, until
the path gets that much faster; then strict xfail turns it into a failure that asks for the marker to go.
Only a missed target counts as the expected failure (``raises=AssertionError``): an error fails the test.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch

import promptseg
from promptseg.bundled import BUNDLED_MODEL_TYPE, bundled_checkpoint
from promptseg.configs import CONFIGS
from promptseg.data.synthetic import HELD_OUT_SEED, generate_scene
from tests._support import official_sam

ROUNDS = 5


@pytest.fixture(scope="module")
def predictors():
    """(official, promptseg default) predictors of the bundled weights, and a held-out 256-pixel scene."""
    ours = promptseg.build_sam(bundled_checkpoint())  # engine "auto": the default path
    official = official_sam(CONFIGS[BUNDLED_MODEL_TYPE])  # skips without segment_anything
    official.load_state_dict(ours.state_dict())
    import segment_anything

    image = generate_scene((HELD_OUT_SEED, 0), size=256).image
    return segment_anything.SamPredictor(official.eval()), promptseg.SamPredictor(ours), image


def ratio(official, ours) -> float:
    """Median of ours over median of the official, in interleaved rounds after one warm-up each."""
    official(), ours()
    times: dict[str, list[float]] = {"official": [], "ours": []}
    for _ in range(ROUNDS):
        for name, call in (("official", official), ("ours", ours)):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["ours"]) / statistics.median(times["official"])


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="measured 0.67x the official click time (bundled model, idle machine, commit 1a5c032, results/cpu_amd_epyc.json); target 0.5x")
def test_a_click_takes_at_most_half_the_official_time(predictors):
    official, ours, image = predictors
    official.set_image(image)
    ours.set_image(image)
    click = {"point_coords": np.array([[128.0, 128.0]]), "point_labels": np.array([1]), "multimask_output": True}
    with torch.inference_mode():
        measured = ratio(lambda: official.predict(**click), lambda: ours.predict(**click))
    assert measured <= 0.5, f"click: {measured:.2f}x the official time"


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="measured 0.95x the official set_image time (bundled model at 256 px, idle machine, commit 1a5c032); target 0.4x, "
    "below the float32 floor of 0.56x (the encoder's arithmetic at this CPU's best GEMM rate, results/cpu_floor_amd_epyc.json)",
)
def test_set_image_takes_at_most_0_4_of_the_official_time(predictors):
    official, ours, image = predictors
    with torch.inference_mode():
        measured = ratio(lambda: official.set_image(image), lambda: ours.set_image(image))
    assert measured <= 0.4, f"set_image: {measured:.2f}x the official time"
