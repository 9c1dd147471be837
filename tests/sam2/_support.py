"""Helpers of the SAM 2 tests: official/promptseg model pairs with equal random weights, and the
assertions of the SAM 2 parity tolerances (issue 26)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests._support import randomize_, relative_error

OFFICIAL_SAM2_MISSING = (
    "the official sam2 is not installed "
    "(SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0 hydra-core iopath)"
)
SIZES = ("t", "s", "b+", "l")

# The parity tolerances of issue 26 (fp32, CPU, identical random weights).
FEATURE_REL_ERR = 1e-5  # image embeddings and high-res features: ||ours - official|| / ||official||
LOW_RES_REL_ERR = 1e-4  # low-res logits: max |ours - official| / max |official|
SCORE_ERR = 1e-5  # IoU predictions and object scores: max |ours - official| / max(1, max |official|)
MASK_MARGIN = 1e-6  # binary masks may differ only where |official logit - threshold| <= this * max |logit|


def config_file(size: str, generation: str = "2.1") -> str:
    """The official config name of a Hiera size ("t", "s", "b+", "l")."""
    return f"configs/sam2.1/sam2.1_hiera_{size}.yaml" if generation == "2.1" else f"configs/sam2/sam2_hiera_{size}.yaml"


def official_sam2(size: str, seed: int = 0, generation: str = "2.1") -> torch.nn.Module:
    """The official SAM 2 model of ``size`` on the CPU with random weights, every constant-initialised
    parameter (norm affines, position embeddings) randomised too (eval mode)."""
    build_sam = pytest.importorskip("sam2.build_sam", reason=OFFICIAL_SAM2_MISSING)
    torch.manual_seed(seed)
    return randomize_(build_sam.build_sam2(config_file(size, generation), device="cpu"), seed)


def sam2_pair(size: str, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(official, promptseg) SAM 2.1 models of ``size`` holding the same random weights."""
    from promptseg.sam2.build_sam import build_sam2
    from promptseg.sam2.checkpoint import load_image_state_dict

    official = official_sam2(size, seed)
    ours = build_sam2(config_file(size), device="cpu")
    load_image_state_dict(ours, official.state_dict())
    return official, ours


def assert_features_match(official: dict, ours: dict, what: str) -> None:
    """Compare predictors' ``_features`` (image embeddings and high-res features)."""
    pairs = [("image_embed", official["image_embed"], ours["image_embed"])]
    levels = zip(official["high_res_feats"], ours["high_res_feats"])
    pairs += [(f"high_res_feats[{i}]", a, b) for i, (a, b) in enumerate(levels)]
    assert len(official["high_res_feats"]) == len(ours["high_res_feats"]) == 2, what
    for name, expected, actual in pairs:
        assert actual.shape == expected.shape, (what, name, actual.shape, expected.shape)
        error = relative_error(actual, expected)
        assert error <= FEATURE_REL_ERR, f"{what}: {name} relative error {error:.2e}"


def assert_scores_match(expected, actual, what: str) -> None:
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    error = np.abs(actual - expected).max() / max(1.0, np.abs(expected).max())
    assert error <= SCORE_ERR, f"{what}: scores differ by {error:.2e}"


def assert_logits_match(expected, actual, what: str) -> None:
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    error = np.abs(actual - expected).max() / np.abs(expected).max()
    assert error <= LOW_RES_REL_ERR, f"{what}: low-res logits max error {error:.2e} of max"


def assert_masks_match(expected_logits, masks, threshold: float, what: str) -> None:
    """Binary ``masks`` equal the official logits' masks except within the margin of the threshold."""
    expected_logits = np.asarray(expected_logits, dtype=np.float64)
    expected = expected_logits > threshold
    assert masks.shape == expected.shape, (what, masks.shape, expected.shape)
    differing = masks.astype(bool) != expected
    margin = MASK_MARGIN * np.abs(expected_logits).max()
    worst = np.abs(expected_logits[differing] - threshold).max() if differing.any() else 0.0
    assert worst <= margin, f"{what}: {differing.sum()} mask pixels differ, one {worst:.2e} from the threshold"


def assert_prediction_matches(official, ours, prompt: dict, what: str, **kwargs) -> None:
    """``predict(**prompt, **kwargs)`` of two predictors: masks, scores and low-res logits within tolerance."""
    masks, scores, low_res = ours.predict(**prompt, **kwargs)
    expected_masks, expected_scores, expected_low_res = official.predict(**prompt, **kwargs)
    assert masks.dtype == expected_masks.dtype == np.float32, what
    assert scores.dtype == expected_scores.dtype and low_res.dtype == expected_low_res.dtype, what
    assert_logits_match(expected_low_res, low_res, what)
    assert_scores_match(expected_scores, scores, what)
    if kwargs.get("return_logits"):
        assert_logits_match(expected_masks, masks, what + " full-size logits")
    elif not np.array_equal(masks, expected_masks):  # look at the logits only where pixels differ
        logits = official.predict(**prompt, **{**kwargs, "return_logits": True})[0]
        assert_masks_match(logits, masks, official.mask_threshold, what)
