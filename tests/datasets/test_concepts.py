"""The captioned scene generator (promptseg/data/concepts.py): every vocabulary item drawn, a pure
function that leaves ``generate_scene`` alone, captions, parts and matching (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from promptseg.data.concepts import ConceptScene, generate_concept_scene
from promptseg.data.synthetic import generate_scene
from promptseg.text import COLOURS, FILLS, SHAPES


def test_generator_draws_every_vocabulary_item():
    seen = {"colour": set(), "shape": set(), "fill": set()}
    parts = 0
    for seed in range(40):
        scene = generate_concept_scene(seed, size=128)
        assert isinstance(scene, ConceptScene)
        assert scene.masks.shape[0] == len(scene.attributes) == len(scene.parents) == len(scene.kinds)
        assert scene.image.dtype == np.uint8 and scene.image.shape == (128, 128, 3)
        for attributes in scene.attributes:
            seen["colour"].add(attributes.colour)
            seen["shape"].add(attributes.shape)
            seen["fill"].add(attributes.fill)
        parts += int((scene.parents >= 0).sum())
    assert seen["colour"] == set(COLOURS)
    assert seen["shape"] == set(SHAPES)
    assert seen["fill"] == set(FILLS)
    assert parts > 0


def test_generator_is_a_pure_function_and_leaves_generate_scene_alone():
    first, second = generate_concept_scene(7), generate_concept_scene(7)
    np.testing.assert_array_equal(first.image, second.image)
    assert first.captions(full=True) == second.captions(full=True)
    # generate_scene's output for a seed is unchanged (the bundled SAM's metrics depend on it)
    scene = generate_scene(0)
    assert scene.kinds == ("thin", "ellipse", "part") and int(scene.image.sum()) == 17241708


def test_captions_parts_and_matching():
    scene = next(s for s in (generate_concept_scene(i) for i in range(50)) if (s.parents >= 0).any())
    part = int(np.flatnonzero(scene.parents >= 0)[0])
    whole = int(scene.parents[part])
    assert not (scene.masks[part] & ~scene.masks[whole]).any()  # the whole includes its part
    assert scene.caption(part) != scene.caption(whole)
    for index in range(len(scene.attributes)):
        caption = scene.caption(index)
        assert index in scene.matching(caption)
        assert caption in scene.caption(index, full=True)
    for index, caption in scene.unique_captions().items():
        assert list(scene.matching(caption)) == [index]
    with pytest.raises(IndexError):
        scene.caption(len(scene.attributes))
