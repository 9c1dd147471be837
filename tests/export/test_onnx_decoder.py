"""ONNX decoders: the official-compatible drop-in against the official ``SamOnnxModel`` export, and the
TensorRT-friendly batched decoder's graph."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from promptseg.export import describe_onnx, export_onnx_batched_decoder, export_onnx_decoder, tensorrt_hazards
from promptseg.export.onnx_decoder import BATCHED_DECODER_INPUTS, BATCHED_DECODER_OUTPUTS
from tests._support import OFFICIAL_MISSING, TINY, relative_error

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
SamOnnxModel = pytest.importorskip("segment_anything.utils.onnx", reason=OFFICIAL_MISSING).SamOnnxModel

DECODER_REL_ERR = 1e-4
OFFICIAL_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]


def export_official_decoder(official_model, path: Path, return_single_mask: bool, **options: bool) -> None:
    """The export of the official ``scripts/export_onnx_model.py``: its dummy inputs, names, axes and opset 17."""
    embed_dim = official_model.prompt_encoder.embed_dim
    grid = official_model.prompt_encoder.image_embedding_size
    dummy_inputs = {
        "image_embeddings": torch.randn(1, embed_dim, *grid),
        "point_coords": torch.randint(0, 1024, (1, 5, 2)).float(),
        "point_labels": torch.randint(0, 4, (1, 5)).float(),
        "mask_input": torch.randn(1, 1, *[4 * side for side in grid]),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SamOnnxModel(official_model, return_single_mask, **options),
            tuple(dummy_inputs.values()),
            str(path),
            dynamo=False,
            export_params=True,
            opset_version=17,
            do_constant_folding=True,
            input_names=list(dummy_inputs),
            output_names=OFFICIAL_OUTPUTS,
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
        )


def decoder_inputs(config, case: str, orig_im_size: tuple[float, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the official decoder for one prompt case (points in the resized frame of side S)."""
    generator = np.random.default_rng(seed)
    side, grid = config.image_size, config.embedding_size
    clicks = generator.uniform(0, side * 0.6, (3, 2))
    box = np.array([[0.1, 0.2], [0.5, 0.6]]) * side
    padding = np.zeros((1, 2))
    points, labels, has_mask = {
        "click + padding point": (np.concatenate([clicks[:1], padding]), [1, -1], 0.0),
        "three clicks + padding point + mask": (np.concatenate([clicks, padding]), [1, 0, 1, -1], 1.0),
        "click + box": (np.concatenate([clicks[:1], box]), [1, 2, 3], 0.0),
        "box + mask": (box, [2, 3], 1.0),
    }[case]
    return {
        "image_embeddings": generator.standard_normal((1, config.prompt_embed_dim, grid, grid), dtype=np.float32),
        "point_coords": points[None].astype(np.float32),
        "point_labels": np.array([labels], dtype=np.float32),
        "mask_input": generator.standard_normal((1, 1, 4 * grid, 4 * grid), dtype=np.float32),
        "has_mask_input": np.array([has_mask], dtype=np.float32),
        "orig_im_size": np.array(orig_im_size, dtype=np.float32),
    }


PROMPT_CASES = ("click + padding point", "three clicks + padding point + mask", "click + box", "box + mask")


def run(path: Path, feeds: dict) -> list[np.ndarray]:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def assert_outputs_match(ours: list[np.ndarray], official: list, what: str) -> None:
    """Same shapes and dtypes; floats within DECODER_REL_ERR (NaN where the official has NaN); counts
    within 0.1% of the pixels (threshold flips of float noise)."""
    assert len(ours) == len(official), what
    for index, (actual, expected) in enumerate(zip(ours, official)):
        expected = np.asarray(expected)
        assert actual.shape == expected.shape and actual.dtype == expected.dtype, (what, index)
        if actual.dtype.kind == "i":
            assert np.abs(actual - expected).max() <= 1e-3 * np.prod(ours[0].shape[-2:]), (what, index)
            continue
        assert (np.isnan(actual) == np.isnan(expected)).all(), (what, index)
        finite = ~np.isnan(expected)
        if np.abs(expected[finite]).max(initial=0.0) > 0:
            assert relative_error(actual[finite], expected[finite]) <= DECODER_REL_ERR, (what, index)
        else:
            assert np.abs(actual[finite]).max(initial=0.0) <= DECODER_REL_ERR, (what, index)


@pytest.fixture(scope="module", params=[False, True], ids=["multimask", "single-mask"])
def decoder_pair(request, tiny_pair, tmp_path_factory):
    """(ours, official) decoder files exported from the same weights, with return_single_mask on or off."""
    official_model, model = tiny_pair
    folder = tmp_path_factory.mktemp("decoders")
    export_onnx_decoder(model, folder / "ours.onnx", return_single_mask=request.param)
    export_official_decoder(official_model, folder / "official.onnx", request.param)
    return folder / "ours.onnx", folder / "official.onnx"


def test_decoder_has_the_official_inputs_and_outputs(decoder_pair):
    ours, official = (describe_onnx(path) for path in decoder_pair)
    assert ours["inputs"] == official["inputs"]
    assert ours["opset"] == official["opset"] == 17
    assert [output["name"] for output in ours["outputs"]] == OFFICIAL_OUTPUTS
    assert [output["dtype"] for output in ours["outputs"]] == [output["dtype"] for output in official["outputs"]]
    ranks = [[len(output["shape"]) for output in description["outputs"]] for description in (ours, official)]
    assert ranks[0] == ranks[1]


@pytest.mark.parametrize("case", PROMPT_CASES)
@pytest.mark.parametrize("orig_im_size", [(1500.0, 2250.0), (600.0, 900.0)], ids=["1500x2250", "600x900"])
def test_decoder_matches_the_official_export(decoder_pair, case, orig_im_size):
    feeds = decoder_inputs(TINY, case, orig_im_size)
    ours, official = (run(path, feeds) for path in decoder_pair)
    assert_outputs_match(ours, official, case)


@pytest.mark.parametrize("orig_im_size", [(300.0, 200.0), (512.0, 512.0)], ids=["portrait", "square"])
def test_decoder_follows_official_pytorch_for_any_aspect_ratio(tiny_pair, tmp_path, orig_im_size):
    """The official ONNX freezes the padding crop of its dummy 1500x2250 image (segment-anything issue #56),
    so for other aspect ratios the official reference is its PyTorch ``SamOnnxModel``."""
    official_model, model = tiny_pair
    export_onnx_decoder(model, tmp_path / "ours.onnx")
    feeds = decoder_inputs(TINY, "three clicks + padding point + mask", orig_im_size)
    with torch.no_grad():
        expected = SamOnnxModel(official_model, return_single_mask=False)(*map(torch.from_numpy, feeds.values()))
    assert_outputs_match(run(tmp_path / "ours.onnx", feeds), [e.numpy() for e in expected], str(orig_im_size))


@pytest.mark.parametrize(
    "options",
    [
        {"use_stability_score": True},
        {"return_extra_metrics": True},
        {"return_single_mask": True, "use_stability_score": True, "return_extra_metrics": True},
    ],
    ids=["stability-score", "extra-metrics", "all-options"],
)
def test_decoder_options_match_the_official_export(tiny_pair, tmp_path, options):
    official_model, model = tiny_pair
    single = options.get("return_single_mask", False)
    extra = {key: value for key, value in options.items() if key != "return_single_mask"}
    export_onnx_decoder(model, tmp_path / "ours.onnx", return_single_mask=single, **extra)
    export_official_decoder(official_model, tmp_path / "official.onnx", single, **extra)
    if options.get("return_extra_metrics"):
        names = [output["name"] for output in describe_onnx(tmp_path / "ours.onnx")["outputs"]]
        assert names == ["masks", "iou_predictions", "stability_scores", "areas", "low_res_masks"]
    for case in PROMPT_CASES:
        feeds = decoder_inputs(TINY, case, (600.0, 900.0))
        assert_outputs_match(run(tmp_path / "ours.onnx", feeds), run(tmp_path / "official.onnx", feeds), case)


def test_batched_decoder_graph_is_tensorrt_friendly(tiny_pair, tmp_path):
    official_model, model = tiny_pair
    export_onnx_batched_decoder(model, tmp_path / "batched.onnx")
    export_onnx_decoder(model, tmp_path / "compatible.onnx")
    export_official_decoder(official_model, tmp_path / "official.onnx", False)

    assert tensorrt_hazards(onnx.load(str(tmp_path / "batched.onnx"))) == []
    official_hazards = " ".join(tensorrt_hazards(onnx.load(str(tmp_path / "official.onnx"))))
    assert "OneHot" in official_hazards and "Tile" in official_hazards  # repeat_interleave
    assert "computed from the values of input(s) ['orig_im_size']" in official_hazards
    # The drop-in keeps the official interface, so its output size still comes from orig_im_size, but
    # the image embedding is gathered, not repeat_interleave-d.
    compatible_hazards = tensorrt_hazards(onnx.load(str(tmp_path / "compatible.onnx")))
    assert compatible_hazards and all("['orig_im_size']" in hazard for hazard in compatible_hazards)

    description = describe_onnx(tmp_path / "batched.onnx")
    shapes = {value["name"]: (value["shape"], value["dtype"]) for value in description["inputs"]}
    assert list(shapes) == list(BATCHED_DECODER_INPUTS)
    assert shapes["image_embeddings"] == (["num_images", 64, 16, 16], "float32")
    assert shapes["point_coords"] == (["num_prompts", "num_points", 2], "float32")
    assert shapes["token_mask"] == (["num_prompts", "num_points"], "bool")
    assert shapes["image_index"] == (["num_prompts"], "int64")
    outputs = {value["name"]: value["shape"] for value in description["outputs"]}
    assert outputs == {"low_res_masks": ["num_prompts", 4, 64, 64], "iou_predictions": ["num_prompts", 4]}
    assert list(outputs) == list(BATCHED_DECODER_OUTPUTS)


def test_float16_batched_decoder_is_close_to_float32(tiny_pair, tmp_path):
    _, model = tiny_pair
    export_onnx_batched_decoder(model, tmp_path / "fp32.onnx")
    export_onnx_batched_decoder(model, tmp_path / "fp16.onnx", dtype=torch.float16)
    generator = np.random.default_rng(3)
    feeds = {
        "image_embeddings": generator.standard_normal((2, 64, 16, 16), dtype=np.float32),
        "point_coords": generator.uniform(0, 256, (3, 4, 2)).astype(np.float32),
        "point_labels": np.array([[1, 0, -1, -1], [2, 3, 1, -1], [1, 1, 0, -1]], dtype=np.float32),
        "token_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=bool),
        "mask_input": generator.standard_normal((3, 1, 64, 64), dtype=np.float32),
        "has_mask_input": np.array([0, 1, 0], dtype=np.float32),
        "image_index": np.array([0, 1, 1]),
    }
    full, half = run(tmp_path / "fp32.onnx", feeds), run(tmp_path / "fp16.onnx", feeds)
    for expected, actual in zip(full, half):
        assert actual.dtype == np.float32
        assert relative_error(actual, expected) <= 2e-2


def test_decoder_export_rejects_a_bad_opset(tiny_pair, tmp_path):
    _, model = tiny_pair
    with pytest.raises(ValueError, match=r"opset must be an int in \[17, 20\], got 16"):
        export_onnx_decoder(model, tmp_path / "d.onnx", opset=16)
    with pytest.raises(ValueError, match=r"opset must be an int in \[17, 20\], got 21"):
        export_onnx_batched_decoder(model, tmp_path / "d.onnx", opset=21)
