"""promptseg.settings: the generator settings and their presets, the dtype table; the generator built
from settings, its filter counts, and ``promptseg amg`` with the bundled model's preset."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from promptseg import SamAutomaticMaskGenerator
from promptseg.amg.filters import FILTER_STAGES, FilterCounts
from promptseg.build import construct_sam
from promptseg.settings import (
    BUNDLED,
    DTYPES,
    OFFICIAL,
    PRESETS,
    PURPOSES,
    SETTING_NAMES,
    GeneratorSettings,
    dtype_from_name,
    dtype_name,
    preset,
    preset_for,
)
from tests._support import TINY, load_image


@pytest.fixture(scope="module")
def bundled_model():
    from promptseg.bundled import build_bundled_sam

    return build_bundled_sam()


# ------------------------------------------------------------------ the settings object
def test_settings_are_the_generator_signature_with_the_official_defaults():
    parameters = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    names = [name for name in parameters if name not in ("self", "model", "decoder")]
    assert list(SETTING_NAMES) == names
    assert {name: getattr(OFFICIAL, name) for name in names} == {name: parameters[name].default for name in names}
    official = pytest.importorskip("segment_anything").SamAutomaticMaskGenerator
    official_parameters = inspect.signature(official.__init__).parameters
    assert {name: getattr(OFFICIAL, name) for name in names} == {
        name: official_parameters[name].default for name in names
    }


@pytest.mark.parametrize(
    "changes, error, pattern",
    [
        ({"points_per_side": 0}, ValueError, "points_per_side must be >= 1, got 0"),
        ({"points_per_side": None}, ValueError, "exactly one of points_per_side and point_grids"),
        ({"pred_iou_thresh": "high"}, TypeError, "pred_iou_thresh must be a real number, got str"),
        ({"box_nms_thresh": 1.5}, ValueError, r"box_nms_thresh must be in \[0, 1\], got 1.5"),
        ({"output_mode": "polygons"}, ValueError, "output_mode must be one of"),
    ],
)
def test_settings_are_checked_once(changes, error, pattern):
    with pytest.raises(error, match=pattern):
        GeneratorSettings(**changes)
    with pytest.raises(error, match=pattern):
        SamAutomaticMaskGenerator(construct_sam(TINY), **changes)


def test_replace_keeps_none_and_swaps_grids():
    assert OFFICIAL.replace(points_per_side=None, pred_iou_thresh=None) == OFFICIAL
    assert OFFICIAL.replace(pred_iou_thresh=0.5).differences(OFFICIAL) == {"pred_iou_thresh": 0.5}
    grid = np.array([[0.25, 0.5], [0.75, 0.5]])
    explicit = OFFICIAL.replace(point_grids=[grid])
    assert explicit.points_per_side is None and explicit.point_grids == (((0.25, 0.5), (0.75, 0.5)),)
    assert hash(explicit) != hash(OFFICIAL)
    assert explicit.replace(points_per_side=32, pred_iou_thresh=None) == OFFICIAL
    kwargs = explicit.generator_kwargs()
    assert np.array_equal(kwargs["point_grids"][0], grid) and kwargs["point_grids"][0].dtype == np.float64
    with pytest.raises(TypeError, match=r"unknown generator setting\(s\) \['nms'\]"):
        OFFICIAL.replace(nms=0.5)


def test_presets_and_the_preset_of_a_model():
    assert PRESETS == {"official": OFFICIAL, "bundled": BUNDLED}
    assert preset_for(None) == BUNDLED and preset_for("vit_tiny", "mine.pth") == BUNDLED
    assert preset_for("vit_b") == OFFICIAL and preset_for(None, "sam_vit_h.pth") == OFFICIAL
    assert BUNDLED.pred_iou_thresh < OFFICIAL.pred_iou_thresh
    assert BUNDLED.stability_score_thresh < OFFICIAL.stability_score_thresh
    for name in PRESETS:
        for purpose in PURPOSES:
            assert isinstance(preset(name, purpose), GeneratorSettings)
    assert preset_for(None, purpose="find").points_per_side == 12
    assert preset_for("vit_b", purpose="proposals").differences(OFFICIAL) == {
        "pred_iou_thresh": 0.5, "stability_score_thresh": 0.7,
    }
    with pytest.raises(ValueError, match="purpose must be one of"):
        preset_for(None, purpose="edges")


def test_dtype_table():
    assert DTYPES == {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    for name, dtype in DTYPES.items():
        assert dtype_from_name(name) is dtype and dtype_name(dtype) == name
    with pytest.raises(ValueError, match=r"dtype must be one of .* got 'fp8'"):
        dtype_from_name("fp8")
    with pytest.raises(ValueError, match="dtype must be one of"):
        dtype_name(torch.int8)


# ------------------------------------------------------------------ the generator from settings
def test_generator_from_settings_is_the_generator_of_those_arguments():
    model = construct_sam(TINY)
    settings = OFFICIAL.replace(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    generator = SamAutomaticMaskGenerator.from_settings(model, settings, box_nms_thresh=0.5)
    assert generator.settings == settings.replace(box_nms_thresh=0.5)
    assert generator.box_nms_thresh == 0.5 and len(generator.point_grids[0]) == 16
    plain = SamAutomaticMaskGenerator(model, **settings.replace(box_nms_thresh=0.5).generator_kwargs())
    image = load_image("dog.jpg")[::8, ::8].copy()
    records, expected = generator.generate(image), plain.generate(image)
    assert [r["bbox"] for r in records] == [r["bbox"] for r in expected]
    assert SamAutomaticMaskGenerator.from_settings(model).settings == OFFICIAL


def _check_tally(counts: FilterCounts, records: list) -> None:
    assert counts.kept == len(records)
    assert counts.candidates == sum(counts.removed().values()) + counts.kept
    assert list(counts.removed()) == list(FILTER_STAGES)


def test_filter_counts_say_which_filter_removed_the_candidates():
    model = construct_sam(TINY)
    image = load_image("truck.jpg")[::10, ::10].copy()
    none_pass = SamAutomaticMaskGenerator(model, points_per_side=4, pred_iou_thresh=1.0)
    assert none_pass.generate(image) == []
    (counts,) = none_pass.last_filter_counts
    assert counts == FilterCounts(candidates=48, pred_iou=48, kept=0)
    assert counts.summary() == "0 of 48 candidate masks kept; removed: 48 by predicted IoU (pred_iou_thresh)"

    generator = SamAutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, crop_n_layers=1,
        min_mask_region_area=20,
    )
    per_image = generator.generate_batch([image, image[:40, :60].copy()])
    assert len(generator.last_filter_counts) == 2
    for counts, records in zip(generator.last_filter_counts, per_image):
        _check_tally(counts, records)
        assert counts.candidates == 5 * 48 and counts.pred_iou == counts.stability == 0
        assert counts.box_nms > 0  # random weights: most masks are near copies


# ------------------------------------------------------------------ the bundled model's preset
def test_bundled_preset_keeps_masks_where_the_official_one_keeps_none(bundled_model):
    from promptseg.data.synthetic import HELD_OUT_SEED, generate_scene

    image = load_image("truck.jpg")  # full size, 1800 x 1200; 16 points a batch keep the memory small
    official = SamAutomaticMaskGenerator.from_settings(bundled_model, OFFICIAL, points_per_side=8, points_per_batch=16)
    assert official.generate(image) == []
    assert "removed" in official.last_filter_counts[0].summary()
    bundled = SamAutomaticMaskGenerator.from_settings(
        bundled_model, preset_for(None), points_per_side=8, points_per_batch=16
    )
    for picture in (image, generate_scene((HELD_OUT_SEED, 14, 0)).image):
        records = bundled.generate(picture)
        assert records
        _check_tally(bundled.last_filter_counts[0], records)


def test_amg_command_uses_the_bundled_preset_and_says_why_none_are_kept(tmp_path, capsys):
    from PIL import Image

    from promptseg.cli import main
    from promptseg.data.synthetic import HELD_OUT_SEED, generate_scene

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(load_image("truck.jpg")).resize((600, 400)).save(images / "truck.jpg")  # a third: less memory
    Image.fromarray(generate_scene((HELD_OUT_SEED, 14, 1)).image).save(images / "scene.png")
    out = tmp_path / "out"
    assert main(["amg", str(images), "--out", str(out), "--points-per-side", "8"]) == 0
    for name in ("truck.jpg", "scene.png"):
        record = json.loads((out / "records" / f"{name}.json").read_text())
        assert record["masks"], name
        assert record["settings"]["pred_iou_thresh"] == BUNDLED.pred_iou_thresh
    capsys.readouterr()
    strict = tmp_path / "strict"
    assert main(["amg", str(images / "scene.png"), "--out", str(strict), "--points-per-side", "4",
                 "--pred-iou-thresh", "1.0"]) == 0
    assert "scene.png: no mask: 0 of 48 candidate masks kept; removed: 48 by predicted IoU" in capsys.readouterr().err
