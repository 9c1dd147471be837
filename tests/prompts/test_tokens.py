"""The one token rule (promptseg/prompts/tokens.py) against the official prompt encoder, and its
numpy face against its torch face."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from promptseg.prompts.frames import ResizeLongestSide
from promptseg.prompts.tokens import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, NOT_A_POINT, prompt_tokens, token_sequence
from promptseg.prompts.validate import check_prompt
from promptseg.train.prompts import PromptState

GENERATOR = torch.Generator().manual_seed(11)
POINTS = (torch.rand(3, 2, 2, generator=GENERATOR) * 250, torch.tensor([[1, 0], [1, 1], [0, 1]]))
BOXES = torch.tensor([[10.0, 20.0, 100.0, 120.0], [0.0, 0.0, 50.0, 50.0], [30.0, 40.0, 60.0, 80.0]])
MASKS = torch.randn(3, 1, 64, 64, generator=GENERATOR)


@pytest.mark.parametrize("points", [None, POINTS], ids=["no_points", "points"])
@pytest.mark.parametrize("boxes", [None, BOXES], ids=["no_box", "box"])
@pytest.mark.parametrize("masks", [None, MASKS], ids=["no_mask", "mask"])
def test_prompt_encoder_equals_the_official_one(tiny_pair, points, boxes, masks):
    """Every combination of points, boxes and masks, through the official PromptEncoder and ours."""
    official, ours = tiny_pair
    with torch.no_grad():
        expected = official.prompt_encoder(points=points, boxes=boxes, masks=masks)
        actual = ours.prompt_encoder(points=points, boxes=boxes, masks=masks)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and torch.allclose(a, e, atol=1e-6)


def test_token_sequence_states_the_rule():
    coords, labels = token_sequence(*POINTS, None)
    assert labels.tolist() == [[1, 0, NOT_A_POINT], [1, 1, NOT_A_POINT], [0, 1, NOT_A_POINT]]
    assert torch.equal(coords[:, :2], POINTS[0]) and not coords[:, 2].any()
    coords, labels = token_sequence(*POINTS, BOXES)
    assert labels[:, 2:].tolist() == [[BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]] * 3
    assert torch.equal(coords[:, 2:], BOXES.reshape(3, 2, 2))
    coords, labels = token_sequence(None, None, None, batch=4)
    assert coords.shape == (4, 0, 2) and labels.shape == (4, 0) and labels.dtype == torch.long
    with pytest.raises(ValueError, match="point_coords and point_labels must be given together"):
        token_sequence(POINTS[0], None, None)


@pytest.mark.parametrize(
    "prompt",
    [
        {"point_coords": [[10.0, 20.0], [300.0, 40.5]], "point_labels": [1, 0]},
        {"box": [5.0, 6.0, 200.0, 300.0]},
        {"point_coords": [[10.0, 20.0]], "point_labels": [0], "box": [5.0, 6.0, 200.0, 300.0]},
        {},
    ],
)
def test_numpy_tokens_equal_torch_tokens(prompt):
    """``prompt_tokens`` (one prompt, original frame) is ``token_sequence`` after the resize."""
    transform, size = ResizeLongestSide(1024), (480, 640)
    checked = check_prompt(**prompt)
    coords, labels = prompt_tokens(checked, transform, size)
    points = None if checked.point_coords is None else torch.from_numpy(transform.apply_coords(checked.point_coords, size))[None]
    point_labels = None if checked.point_labels is None else torch.from_numpy(checked.point_labels)[None]
    box = None if checked.box is None else torch.from_numpy(transform.apply_boxes(checked.box, size))
    expected_coords, expected_labels = token_sequence(points, point_labels, box)
    assert coords.dtype == np.float64 and labels.dtype == np.int64
    np.testing.assert_array_equal(coords, expected_coords[0].double().numpy())
    np.testing.assert_array_equal(labels, expected_labels[0].numpy())


def test_training_prompts_follow_the_rule():
    """Point-first objects: clicks then the pad; box-first: corrective clicks then the corners."""
    state = PromptState(
        is_box=torch.tensor([False, True]),
        boxes=torch.tensor([[0.0, 0.0, 9.0, 9.0], [1.0, 2.0, 3.0, 4.0]]),
        points=torch.tensor([[[5.0, 5.0], [6.0, 6.0]], [[0.0, 0.0], [7.0, 7.0]]]),
        labels=torch.tensor([[1, 0], [1, 1]]),
    )
    coords, labels = state.tokens()
    assert labels.tolist() == [[1, 0, NOT_A_POINT], [1, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]]
    assert coords[1].tolist() == [[7.0, 7.0], [1.0, 2.0], [3.0, 4.0]]
