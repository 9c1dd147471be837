"""Every image-side module path and public name of the installed official ``sam2`` exists in
``promptseg.sam2``, with the official arguments.

Image-side modules: the package, ``build_sam``, ``sam2_image_predictor``, ``automatic_mask_generator``,
``modeling`` (backbones, position encodings, the SAM heads, ``sam2_base``, ``sam2_utils``) and the
``utils`` the image API uses (``amg``, ``transforms``). Left out as video-only: ``sam2_video_predictor``
(and ``_legacy``), ``modeling.memory_attention``, ``modeling.memory_encoder``, ``utils.misc`` (video
frame loading; its connected components are the CUDA extension that
``promptseg.sam2.utils.transforms`` replaces) and ``benchmark`` (a video benchmark script); inside
the image-side modules, the names in :data:`VIDEO_OR_TRAINING_NAMES`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

from tests._support import official_public_names
from tests.sam2._support import OFFICIAL_SAM2_MISSING

pytest.importorskip("sam2.build_sam", reason=OFFICIAL_SAM2_MISSING)
sam2 = importlib.import_module("sam2")

IMAGE_MODULES = [
    "sam2",
    "sam2.build_sam",
    "sam2.sam2_image_predictor",
    "sam2.automatic_mask_generator",
    "sam2.modeling",
    "sam2.modeling.backbones",
    "sam2.modeling.backbones.hieradet",
    "sam2.modeling.backbones.image_encoder",
    "sam2.modeling.backbones.utils",
    "sam2.modeling.position_encoding",
    "sam2.modeling.sam",
    "sam2.modeling.sam.mask_decoder",
    "sam2.modeling.sam.prompt_encoder",
    "sam2.modeling.sam.transformer",
    "sam2.modeling.sam2_base",
    "sam2.modeling.sam2_utils",
    "sam2.utils",
    "sam2.utils.amg",
    "sam2.utils.transforms",
]
VIDEO_ONLY_MODULES = {
    "sam2.benchmark",
    "sam2.sam2_video_predictor",
    "sam2.sam2_video_predictor_legacy",
    "sam2.modeling.memory_attention",
    "sam2.modeling.memory_encoder",
    "sam2.utils.misc",
}
VIDEO_OR_TRAINING_NAMES = {
    # the rotary encoding of the memory attention
    "sam2.modeling.position_encoding": {"apply_rotary_enc", "compute_axial_cis", "init_t_xy", "reshape_for_broadcast"},
    "sam2.modeling.sam.transformer": {"RoPEAttention"},
    # frame selection, memory helpers and click simulation of video inference and training
    "sam2.modeling.sam2_utils": {
        "get_1d_sine_pe",
        "get_activation_fn",
        "get_clones",
        "get_next_point",
        "sample_box_points",
        "sample_one_point_from_error_center",
        "sample_random_points_from_errors",
        "select_closest_cond_frames",
    },
}
# Public methods of official classes that nothing in the official code calls (left out).
UNUSED_METHODS = {"PositionEmbeddingSine": {"encode", "encode_boxes", "encode_points"}}
# Classes whose own public methods must all exist (SAM2Base's are video inference).
CLASSES_WITH_METHODS = [
    ("sam2.sam2_image_predictor", "SAM2ImagePredictor"),
    ("sam2.automatic_mask_generator", "SAM2AutomaticMaskGenerator"),
    ("sam2.utils.transforms", "SAM2Transforms"),
    ("sam2.modeling.sam.mask_decoder", "MaskDecoder"),
    ("sam2.modeling.sam.prompt_encoder", "PromptEncoder"),
    ("sam2.modeling.sam.transformer", "TwoWayTransformer"),
    ("sam2.modeling.backbones.hieradet", "Hiera"),
    ("sam2.modeling.backbones.image_encoder", "FpnNeck"),
    ("sam2.modeling.position_encoding", "PositionEmbeddingSine"),
    ("sam2.modeling.position_encoding", "PositionEmbeddingRandom"),
]
# Private methods code written for the official predictor and generator commonly calls.
PRIVATE_API = {
    "SAM2ImagePredictor": {"_predict", "_prep_prompts"},
    "SAM2AutomaticMaskGenerator": {"_generate_masks", "_process_crop", "_process_batch"},
    "SAM2Base": {"forward_image", "_prepare_backbone_features", "_build_sam_heads"},
}


def promptseg_path(official_name: str) -> str:
    return "promptseg." + official_name


def test_every_official_module_is_image_side_or_listed_as_video():
    import pkgutil

    found = {"sam2"} | {info.name for info in pkgutil.walk_packages(sam2.__path__, "sam2.")}
    found -= {name for name in found if name.startswith("sam2.configs")}
    assert found == set(IMAGE_MODULES) | VIDEO_ONLY_MODULES


@pytest.mark.parametrize("official_name", IMAGE_MODULES)
def test_every_official_name_exists(official_name):
    official = importlib.import_module(official_name)
    ours = importlib.import_module(promptseg_path(official_name))
    skipped = VIDEO_OR_TRAINING_NAMES.get(official_name, set())
    assert skipped <= set(official_public_names(official)), "a listed video name is gone from the official module"
    for name, value in official_public_names(official).items():
        if name in skipped:
            continue
        where = f"{ours.__name__}.{name}"
        assert hasattr(ours, name), f"{where} is missing"
        our_value = getattr(ours, name)
        assert inspect.isclass(our_value) == inspect.isclass(value), where
        assert callable(our_value) == callable(value), where
        if isinstance(value, dict):
            assert isinstance(our_value, dict) and set(value) <= set(our_value), where
        if callable(value):
            assert_accepts_official_arguments(our_value, value, where)


def assert_accepts_official_arguments(ours: Any, official: Any, where: str) -> None:
    """Every official parameter is accepted by name (or by ``**kwargs``), positional ones in the same order."""
    try:
        expected = inspect.signature(official.__init__ if inspect.isclass(official) else official)
    except (TypeError, ValueError):
        return
    actual = inspect.signature(ours.__init__ if inspect.isclass(ours) else ours)
    params = actual.parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name, param in expected.parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        assert name in params or takes_kwargs, f"{where} does not accept the official argument {name!r}"
    positional = [n for n, p in expected.parameters.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert list(params)[: len(positional)] == positional, f"{where}: positional {list(params)} vs {positional}"


@pytest.mark.parametrize("module_name, class_name", CLASSES_WITH_METHODS)
def test_official_methods_exist(module_name, class_name):
    official = getattr(importlib.import_module(module_name), class_name)
    ours = getattr(importlib.import_module(promptseg_path(module_name)), class_name)
    unused = UNUSED_METHODS.get(class_name, set())
    kinds = (property, classmethod, staticmethod)
    methods = {name for name, value in vars(official).items() if callable(value) or isinstance(value, kinds)}
    for name in sorted(methods - unused):
        if name.startswith("_") and name not in PRIVATE_API.get(class_name, set()):
            continue
        assert hasattr(ours, name), f"promptseg's {class_name}.{name} is missing"
        if callable(getattr(official, name)) and not isinstance(vars(official)[name], property):
            assert_accepts_official_arguments(getattr(ours, name), getattr(official, name), f"{class_name}.{name}")


@pytest.mark.parametrize("class_name", sorted(PRIVATE_API))
def test_private_methods_code_uses_exist(class_name):
    module = {
        "SAM2ImagePredictor": "sam2.sam2_image_predictor",
        "SAM2AutomaticMaskGenerator": "sam2.automatic_mask_generator",
        "SAM2Base": "sam2.modeling.sam2_base",
    }[class_name]
    ours = getattr(importlib.import_module(promptseg_path(module)), class_name)
    official = getattr(importlib.import_module(module), class_name)
    for name in PRIVATE_API[class_name]:
        assert hasattr(ours, name), f"promptseg's {class_name}.{name} is missing"
        assert_accepts_official_arguments(getattr(ours, name), getattr(official, name), f"{class_name}.{name}")


def test_main_names_import_from_the_package():
    import promptseg.sam2

    for name in ("build_sam2", "build_sam2_hf", "SAM2ImagePredictor", "SAM2AutomaticMaskGenerator", "SAM2Base"):
        assert getattr(promptseg.sam2, name) is not None
    assert promptseg.sam2.SAM2ImagePredictor is importlib.import_module(
        "promptseg.sam2.sam2_image_predictor"
    ).SAM2ImagePredictor
