"""Every module path and public name of the installed official ``segment_anything`` exists in promptseg,
the official helpers promptseg adds behave as the official ones, and the official ONNX export script
runs with ``segment_anything`` swapped for promptseg."""

from __future__ import annotations

import copy
import importlib
import inspect
import itertools
import pkgutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import promptseg
from promptseg.modeling import image_encoder
from promptseg.utils import amg
from promptseg.utils.onnx import SamOnnxModel
from tests._support import OFFICIAL_MISSING, TINY, official_public_names
from tests.export import test_onnx_decoder as test_export_decoder

onnxruntime = pytest.importorskip("onnxruntime")
segment_anything = pytest.importorskip("segment_anything", reason=OFFICIAL_MISSING)
official_image_encoder = pytest.importorskip("segment_anything.modeling.image_encoder", reason=OFFICIAL_MISSING)
official_amg = pytest.importorskip("segment_anything.utils.amg", reason=OFFICIAL_MISSING)
OfficialSamOnnxModel = pytest.importorskip("segment_anything.utils.onnx", reason=OFFICIAL_MISSING).SamOnnxModel
from tests.export.test_onnx_decoder import OFFICIAL_OUTPUTS, PROMPT_CASES, assert_outputs_match, decoder_inputs

OFFICIAL_MODULES = [segment_anything.__name__] + [
    info.name for info in pkgutil.walk_packages(segment_anything.__path__, f"{segment_anything.__name__}.")
]


def promptseg_path(official_name: str) -> str:
    return "promptseg" + official_name[len(segment_anything.__name__) :]


def test_public_names_are_what_code_can_import():
    assert "segment_anything.utils.onnx" in OFFICIAL_MODULES
    assert set(official_public_names(segment_anything)) == {
        "SamAutomaticMaskGenerator",
        "SamPredictor",
        "build_sam",
        "build_sam_vit_b",
        "build_sam_vit_h",
        "build_sam_vit_l",
        "sam_model_registry",
    }
    assert set(official_public_names(official_image_encoder)) == {
        "ImageEncoderViT",
        "Block",
        "Attention",
        "PatchEmbed",
        "window_partition",
        "window_unpartition",
        "get_rel_pos",
        "add_decomposed_rel_pos",
    }


@pytest.mark.parametrize("official_name", OFFICIAL_MODULES)
def test_every_official_module_and_name_exists(official_name):
    official = importlib.import_module(official_name)
    ours = importlib.import_module(promptseg_path(official_name))
    for name, value in official_public_names(official).items():
        where = f"{ours.__name__}.{name}"
        assert hasattr(ours, name), f"{where} is missing"
        our_value = getattr(ours, name)
        assert inspect.isclass(our_value) == inspect.isclass(value), where
        assert callable(our_value) == callable(value), where
        if isinstance(value, dict):
            assert isinstance(our_value, dict) and set(value) <= set(our_value), where


def test_build_sam_is_still_the_function_after_importing_its_module():
    """As in the official package, ``promptseg.build_sam`` stays the function once its module is imported."""
    code = "import promptseg.build_sam, promptseg; assert callable(promptseg.build_sam), promptseg.build_sam"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# ------------------------------------------------------- modeling.image_encoder functions


@pytest.mark.parametrize("size, window_size", [((2, 14, 14, 8), 7), ((2, 16, 11, 8), 7)], ids=["exact", "padded"])
def test_window_partition_and_unpartition_match_official(size, window_size):
    x = torch.randn(size)
    windows, padded = image_encoder.window_partition(x, window_size)
    expected_windows, expected_padded = official_image_encoder.window_partition(x, window_size)
    assert padded == expected_padded
    torch.testing.assert_close(windows, expected_windows, rtol=0, atol=0)
    hw = size[1:3]
    torch.testing.assert_close(
        image_encoder.window_unpartition(windows, window_size, padded, hw),
        official_image_encoder.window_unpartition(expected_windows, window_size, expected_padded, hw),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("q_size, k_size, length", [(7, 7, 13), (7, 7, 27), (4, 8, 15), (8, 4, 9)])
def test_get_rel_pos_matches_official(q_size, k_size, length):
    rel_pos = torch.randn(length, 6)
    torch.testing.assert_close(
        image_encoder.get_rel_pos(q_size, k_size, rel_pos),
        official_image_encoder.get_rel_pos(q_size, k_size, rel_pos),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("q_size, k_size", [((4, 5), (4, 5)), ((4, 6), (8, 3))])
def test_add_decomposed_rel_pos_matches_official(q_size, k_size):
    batch, dim = 3, 6
    attn = torch.randn(batch, q_size[0] * q_size[1], k_size[0] * k_size[1])
    q = torch.randn(batch, q_size[0] * q_size[1], dim)
    rel_pos_h, rel_pos_w = torch.randn(2 * q_size[0] - 1, dim), torch.randn(11, dim)
    args = (attn, q, rel_pos_h, rel_pos_w, q_size, k_size)
    torch.testing.assert_close(
        image_encoder.add_decomposed_rel_pos(*args), official_image_encoder.add_decomposed_rel_pos(*args)
    )


# ----------------------------------------------------------------------- utils.amg helpers


@pytest.mark.parametrize(
    "boxes", [torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]), torch.rand(2, 3, 4), torch.tensor([1.0, 2.0, 3.0, 4.0])]
)
def test_uncrop_boxes_and_points_match_official(boxes):
    crop_box = [10, 20, 50, 70]
    expected = official_amg.uncrop_boxes_xyxy(boxes, crop_box)
    actual = amg.uncrop_boxes_xyxy(boxes, crop_box)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected)
    points = boxes[..., :2]
    torch.testing.assert_close(amg.uncrop_points(points, crop_box), official_amg.uncrop_points(points, crop_box))


@pytest.mark.parametrize("crop_box", [[0, 0, 9, 7], [2, 1, 6, 5], [3, 0, 9, 4]])
def test_uncrop_masks_matches_official(crop_box):
    x0, y0, x1, y1 = crop_box
    masks = torch.rand(3, y1 - y0, x1 - x0) > 0.5
    expected = official_amg.uncrop_masks(masks, crop_box, 7, 9)
    actual = amg.uncrop_masks(masks, crop_box, 7, 9)
    assert actual.shape == (3, 7, 9) and torch.equal(actual, expected)
    if crop_box == [0, 0, 9, 7]:
        assert actual is masks


def test_box_xyxy_to_xywh_matches_official():
    for box in (torch.tensor([3, 4, 10, 12]), [3.0, 4.0, 10.0, 12.5], np.array([1, 1, 2, 5])):
        before = copy.deepcopy(box)
        expected = official_amg.box_xyxy_to_xywh(box)
        actual = amg.box_xyxy_to_xywh(box)
        assert type(actual) is type(expected) and np.array_equal(np.asarray(actual), np.asarray(expected))
        assert np.array_equal(np.asarray(box), np.asarray(before))


def test_batch_iterator_matches_official():
    points, labels = np.arange(14).reshape(7, 2), list(range(7))
    for batch_size in (1, 3, 7, 10):
        actual = list(amg.batch_iterator(batch_size, points, labels))
        expected = list(official_amg.batch_iterator(batch_size, points, labels))
        assert len(actual) == len(expected)
        for (our_points, our_labels), (points_batch, labels_batch) in zip(actual, expected):
            assert np.array_equal(our_points, points_batch) and our_labels == labels_batch
    with pytest.raises(ValueError):
        next(amg.batch_iterator(2, points, labels[:3]))


def test_mask_data_matches_official():
    def columns() -> dict:
        generator = torch.Generator().manual_seed(0)
        return {
            "masks": torch.rand(5, 4, 4, generator=generator) > 0.5,
            "iou_preds": np.linspace(0.0, 1.0, 5),
            "rles": [{"counts": [index]} for index in range(5)],
        }

    ours, official = amg.MaskData(**columns()), official_amg.MaskData(**columns())
    for data in (ours, official):
        data.filter(torch.tensor([True, False, True, True, False]))
        data.cat(type(data)(**columns()))
        data["order"] = torch.arange(8.0)
        data.filter(torch.tensor([6, 0, 2, 1]))
        del data["iou_preds"]
        data.to_numpy()
    assert [key for key, _ in ours.items()] == [key for key, _ in official.items()]
    for key, value in official.items():
        if isinstance(value, list):
            assert ours[key] == value, key
        else:
            assert type(ours[key]) is type(value) and np.array_equal(ours[key], value), key
    with pytest.raises(TypeError):
        ours["scores"] = (0.5, 0.7)


# ------------------------------------------------- the official ONNX export, run on promptseg

OPTIONS = ("return_single_mask", "use_stability_score", "return_extra_metrics")
OPTION_COMBINATIONS = [dict(zip(OPTIONS, values)) for values in itertools.product((False, True), repeat=3)]


def option_id(options: dict) -> str:
    return "+".join(name for name, value in options.items() if value) or "defaults"


@pytest.mark.parametrize("options", OPTION_COMBINATIONS, ids=option_id)
def test_sam_onnx_model_matches_official_in_pytorch(tiny_pair, options):
    """The wrapper itself, eager, on an aspect ratio the official graph would not follow."""
    official_model, model = tiny_pair
    single, extra = options["return_single_mask"], {k: v for k, v in options.items() if k != "return_single_mask"}
    feeds = decoder_inputs(TINY, "three clicks + padding point + mask", (300.0, 200.0))
    inputs = [torch.from_numpy(value) for value in feeds.values()]
    expected = OfficialSamOnnxModel(official_model, single, **extra)(*inputs)
    actual = SamOnnxModel(model, single, **extra)(*inputs)
    assert_outputs_match([tensor.numpy() for tensor in actual], [tensor.numpy() for tensor in expected], str(options))


@pytest.mark.parametrize("options", OPTION_COMBINATIONS, ids=option_id)
def test_official_export_script_runs_on_promptseg(tiny_pair, tmp_path, monkeypatch, options):
    """``export_official_decoder`` is the official script's ``export_decoder`` (its dummy inputs, names,
    dynamic axes, opset 17); given promptseg's ``SamOnnxModel`` in place of the official one, as a
    user's changed import line would, it exports promptseg's model. Both files run in ONNX Runtime."""
    official_model, model = tiny_pair
    single, extra = options["return_single_mask"], {k: v for k, v in options.items() if k != "return_single_mask"}
    test_export_decoder.export_official_decoder(official_model, tmp_path / "official.onnx", single, **extra)
    monkeypatch.setattr(test_export_decoder, "SamOnnxModel", SamOnnxModel)
    test_export_decoder.export_official_decoder(model, tmp_path / "ours.onnx", single, **extra)

    ours, official = (describe_io(tmp_path / name) for name in ("ours.onnx", "official.onnx"))
    assert ours == official
    assert [name for name, _, _ in ours["outputs"][:3]] == OFFICIAL_OUTPUTS
    ours, official = (outputs_by_case(tmp_path / name) for name in ("ours.onnx", "official.onnx"))
    for case in PROMPT_CASES:
        assert_outputs_match(ours[case], official[case], case)


def outputs_by_case(path) -> dict[str, list[np.ndarray]]:
    """The decoder file's outputs for each prompt case (one ONNX Runtime session)."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {case: session.run(None, decoder_inputs(TINY, case, (600.0, 900.0))) for case in PROMPT_CASES}


def describe_io(path) -> dict:
    """Inputs as (name, shape, dtype); outputs as (name, rank, dtype), unnamed outputs (the script
    names three of the five extra-metrics outputs) as None."""
    from promptseg.export import describe_onnx

    description = describe_onnx(path)
    named = set(OFFICIAL_OUTPUTS)
    return {
        "inputs": [(value["name"], value["shape"], value["dtype"]) for value in description["inputs"]],
        "outputs": [
            (value["name"] if value["name"] in named else None, len(value["shape"]), value["dtype"])
            for value in description["outputs"]
        ],
    }
