"""ONNX export of the image encoder, run with ONNX Runtime on the CPU against PyTorch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from promptseg import SamPredictor
from promptseg.build import construct_sam
from promptseg.configs import VIT_H
from promptseg.export import describe_onnx, export_onnx_encoder, tensorrt_hazards
from promptseg.export.onnx_common import PROTOBUF_LIMIT_BYTES, external_data_path
from promptseg.modeling.common import LayerNorm2d
from tests._support import relative_error

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install onnx)")
onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")

EMBEDDING_REL_ERR = 1e-4
HALF_PRECISION_REL_ERR = 2e-2


def run_onnx(path, feeds: dict) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    """ONNX element type of every tensor of the graph (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {value.name: value.type.tensor_type.elem_type for value in values}
    types.update({tensor.name: tensor.data_type for tensor in model.graph.initializer})
    return types


def test_encoder_matches_pytorch_with_dynamic_batch(tiny_pair, tmp_path):
    _, model = tiny_pair
    path = tmp_path / "encoder.onnx"
    export_onnx_encoder(model, path)
    description = describe_onnx(path)
    assert description["inputs"] == [{"name": "images", "shape": ["batch", 3, 256, 256], "dtype": "float32"}]
    assert description["outputs"] == [{"name": "image_embeddings", "shape": ["batch", 64, 16, 16], "dtype": "float32"}]
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.image_encoder(images)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 2):
        (embeddings,) = session.run(None, {"images": images[:batch].numpy()})
        assert embeddings.shape == (batch, 64, 16, 16)
        assert relative_error(embeddings, expected[:batch]) <= EMBEDDING_REL_ERR
    assert tensorrt_hazards(onnx.load(str(path))) == []


def test_encoder_with_fixed_batch(tiny_pair, tmp_path):
    _, model = tiny_pair
    path = tmp_path / "encoder.onnx"
    export_onnx_encoder(model, path, batch=2)
    assert describe_onnx(path)["inputs"][0]["shape"] == [2, 3, 256, 256]
    images = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        expected = model.image_encoder(images)
    assert relative_error(run_onnx(path, {"images": images.numpy()})[0], expected) <= EMBEDDING_REL_ERR


def test_float16_encoder_is_close_to_float32_and_keeps_statistics_in_float32(tiny_pair, tmp_path):
    _, model = tiny_pair
    path = tmp_path / "encoder_fp16.onnx"
    export_onnx_encoder(model, path, dtype=torch.float16)
    graph = onnx.load(str(path))
    types = value_types(graph)
    matmuls = [node for node in graph.graph.node if node.op_type == "MatMul"]
    assert matmuls and all(types[node.input[0]] == onnx.TensorProto.FLOAT16 for node in matmuls)
    for node in graph.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert types[node.input[0]] == onnx.TensorProto.FLOAT, node.name
    assert describe_onnx(path)["inputs"][0]["dtype"] == "float32"
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.image_encoder(images)
    (embeddings,) = run_onnx(path, {"images": images.numpy()})
    assert embeddings.dtype == np.float32
    assert relative_error(embeddings, expected) <= HALF_PRECISION_REL_ERR


def test_bfloat16_encoder_is_valid_onnx_with_float32_statistics_and_convolutions(tiny_pair, tmp_path):
    """ONNX Runtime has no bfloat16 CPU kernels, so this graph is checked statically only."""
    _, model = tiny_pair
    path = tmp_path / "encoder_bf16.onnx"
    export_onnx_encoder(model, path, dtype=torch.bfloat16)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    types = value_types(graph)
    expected_input_type = {
        "MatMul": onnx.TensorProto.BFLOAT16,
        "LayerNormalization": onnx.TensorProto.FLOAT,
        "Softmax": onnx.TensorProto.FLOAT,
        "Conv": onnx.TensorProto.FLOAT,
    }
    seen = set()
    for node in graph.graph.node:
        if node.op_type in expected_input_type:
            seen.add(node.op_type)
            assert types[node.input[0]] == expected_input_type[node.op_type], node.name
    assert seen == set(expected_input_type)


def test_encoder_with_preprocessing_takes_any_uint8_image(tiny_pair, images, tmp_path):
    _, model = tiny_pair
    path = tmp_path / "encoder_pre.onnx"
    export_onnx_encoder(model, path, include_preprocessing=True, opset=18)
    assert describe_onnx(path)["inputs"] == [{"name": "image", "shape": ["height", "width", 3], "dtype": "uint8"}]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predictor = SamPredictor(model)
    truck = images["truck.jpg"]
    portrait = np.ascontiguousarray(np.rot90(truck))
    cases = {"landscape": truck, "portrait": portrait, "small (upscaled)": truck[:200, :100]}
    for case, image in cases.items():
        (embedding,) = session.run(None, {"image": np.ascontiguousarray(image)})
        predictor.set_image(image)
        # SamPredictor resizes with PIL (integer arithmetic); the graph rounds a float resize: pixels differ by <= 1.
        assert relative_error(embedding, predictor.features) <= 1e-2, case
        chw = torch.as_tensor(image).permute(2, 0, 1)[None].float()
        resized = predictor.transform.apply_image_torch(chw).round().clamp(0, 255)
        with torch.no_grad():
            expected = model.image_encoder(model.preprocess(resized[0])[None])
        assert relative_error(embedding, expected) <= 1e-3, case


def test_encoder_export_checks_arguments_and_leaves_model_untouched(tiny_pair, tmp_path):
    _, model = tiny_pair
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(ValueError, match="needs opset >= 18"):
        export_onnx_encoder(model, tmp_path / "e.onnx", include_preprocessing=True)
    with pytest.raises(ValueError, match=r"opset must be an int in \[17, 20\], got 11"):
        export_onnx_encoder(model, tmp_path / "e.onnx", opset=11)
    with pytest.raises(TypeError, match="dtype must be one of"):
        export_onnx_encoder(model, tmp_path / "e.onnx", dtype=torch.int8)
    with pytest.raises(ValueError, match="batch must be 'dynamic' or a positive int, got 0"):
        export_onnx_encoder(model, tmp_path / "e.onnx", batch=0)
    export_onnx_encoder(model, tmp_path / "e.onnx", dtype=torch.float16)
    assert model.dtype == torch.float32 and not model.training
    assert any(isinstance(module, LayerNorm2d) for module in model.modules())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_vit_h_encoder_weights_go_to_external_data_and_load_in_onnx_runtime(tmp_path):
    """vit_h's 2.5 GB of float32 weights exceed protobuf's 2 GiB: they must go to one external file."""
    out = tmp_path / "vit_h"
    try:
        torch.manual_seed(0)
        export_onnx_encoder(construct_sam(VIT_H), out / "encoder.onnx")
        assert sorted(path.name for path in out.iterdir()) == ["encoder.onnx", "encoder.onnx.data"]
        assert (out / "encoder.onnx").stat().st_size < 16 << 20
        assert external_data_path(out / "encoder.onnx").stat().st_size > PROTOBUF_LIMIT_BYTES
        description = describe_onnx(out / "encoder.onnx")
        assert description["external_data"] == "encoder.onnx.data"
        assert description["outputs"][0]["shape"] == ["batch", 256, 64, 64]
        graph = onnx.load(str(out / "encoder.onnx"), load_external_data=False)
        large = [tensor for tensor in graph.graph.initializer if len(tensor.raw_data) > 1024 or tensor.external_data]
        assert large and all(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in large)
        # Creating the session reads and checks all 2.5 GB of weights; running vit_h (~1 min on a 2-core CPU)
        # adds nothing the vit_b run of test_export_cli does not cover.
        session = onnxruntime.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
        assert [value.name for value in session.get_inputs()] == ["images"]
    finally:
        shutil.rmtree(out, ignore_errors=True)
