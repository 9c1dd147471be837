"""``promptseg export``: ONNX bundles end to end (vit_b, checked against PyTorch and the official export),
and the clear failures."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from promptseg.cli import main
from promptseg.configs import VIT_B
from promptseg.export import export_onnx_bundle
from promptseg.utils.transforms import ResizeLongestSide
from tests._support import TINY, relative_error
from tests.export.test_onnx_decoder import assert_outputs_match, decoder_inputs, export_official_decoder

onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def session(path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_onnx_vit_b_matches_pytorch_and_the_official_export(vit_b_pair, images, tmp_path, capsys):
    try:
        official_model, model = vit_b_pair
        checkpoint = tmp_path / "vit_b_random.pth"
        torch.save(model.state_dict(), checkpoint)
        out = tmp_path / "onnx"
        model_arguments = ["--model", "vit_b", "--checkpoint", str(checkpoint), "--device", "cpu"]
        assert main(["export", "onnx", *model_arguments, "--out", str(out), "--quantize"]) == 0
        captured = capsys.readouterr()
        assert "RANDOM WEIGHTS" not in captured.err and "export.json" in captured.out
        checkpoint.unlink()

        description = json.loads((out / "export.json").read_text())
        assert (description["model_type"], description["random_weights"], description["opset"]) == ("vit_b", False, 17)
        assert description["weights"] == str(checkpoint)
        graphs = description["graphs"]
        assert set(graphs) == {"encoder", "decoder", "decoder_batched", "decoder_quantized", "decoder_batched_quantized"}
        assert graphs["encoder"]["inputs"] == [{"name": "images", "shape": ["batch", 3, 1024, 1024], "dtype": "float32"}]
        assert graphs["encoder"]["outputs"][0]["shape"] == ["batch", 256, 64, 64]
        assert [value["name"] for value in graphs["decoder"]["inputs"]] == [
            "image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"
        ]
        assert graphs["decoder"]["inputs"][1] == {"name": "point_coords", "shape": [1, "num_points", 2], "dtype": "float32"}
        assert graphs["decoder_batched"]["outputs"][0]["shape"] == ["num_prompts", 4, 256, 256]
        assert all(graph["external_data"] is None for graph in graphs.values())

        truck = torch.as_tensor(images["truck.jpg"]).permute(2, 0, 1)[None].float()
        image = model.preprocess(ResizeLongestSide(VIT_B.image_size).apply_image_torch(truck)[0])[None]
        with torch.no_grad():
            expected_embedding = model.image_encoder(image)
        (embedding,) = session(out / "encoder.onnx").run(None, {"images": image.numpy()})
        assert relative_error(embedding, expected_embedding) <= 1e-4

        export_official_decoder(official_model, tmp_path / "official.onnx", return_single_mask=False)
        feeds = decoder_inputs(VIT_B, "three clicks + padding point + mask", (1200.0, 1800.0))
        feeds["image_embeddings"] = embedding
        ours = session(out / "decoder.onnx").run(None, feeds)
        assert_outputs_match(ours, session(tmp_path / "official.onnx").run(None, feeds), "vit_b decoder")

        batched = session(out / "decoder_batched.onnx").run(
            None,
            {
                "image_embeddings": embedding,
                "point_coords": feeds["point_coords"],
                "point_labels": feeds["point_labels"],
                "token_mask": np.ones(feeds["point_labels"].shape, dtype=bool),
                "mask_input": feeds["mask_input"],
                "has_mask_input": feeds["has_mask_input"],
                "image_index": np.zeros(1, dtype=np.int64),
            },
        )
        assert relative_error(batched[0], ours[2]) <= 1e-4 and relative_error(batched[1], ours[1]) <= 1e-4
        quantized = session(out / "decoder_quantized.onnx").run(None, feeds)
        assert [output.shape for output in quantized] == [output.shape for output in ours]
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)  # ~750 MB of vit_b graphs and weights


def test_export_bundle_of_random_weights_says_so(tiny_pair, tmp_path):
    _, model = tiny_pair
    description = export_onnx_bundle(model, tmp_path, model_type="tiny", encoder_dtype=torch.float16)
    assert description == json.loads((tmp_path / "export.json").read_text())
    assert description["random_weights"] is True and description["weights"] == "random"
    assert description["encoder_dtype"] == "float16" and description["image_size"] == TINY.image_size
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "decoder.onnx", "decoder_batched.onnx", "encoder.onnx", "export.json"
    ]


def test_export_onnx_of_random_weights_warns_and_says_so(tmp_path, capsys):
    assert main(["export", "onnx", "--model", "vit_tiny", "--device", "cpu", "--out", str(tmp_path)]) == 0
    assert "RANDOM WEIGHTS" in capsys.readouterr().err
    description = json.loads((tmp_path / "export.json").read_text())
    assert description["model_type"] == "vit_tiny"
    assert description["weights"] == "random" and description["random_weights"] is True


def test_export_onnx_checks_the_output_folder(tmp_path, capsys):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "onnx", "--model", "vit_b", "--out", str(not_a_folder)])
    assert exit_info.value.code == 2
    assert "--out must be a folder" in capsys.readouterr().err


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed; this checks the message printed without it")
def test_export_tensorrt_without_tensorrt_fails_clearly(tmp_path, capsys):
    assert main(["export", "tensorrt", "--model", "vit_b", "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "promptseg export tensorrt: TensorRT is not installed" in err
    assert not any(tmp_path.iterdir())
