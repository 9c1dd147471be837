"""The ViT encoder's attention op ``vit_attention``: its reference and its fused CUDA kernel
(``torch.ops.promptseg.vit_attention``).

CPU tests check the reference against a direct float64 formula, its chunking and input checks, the
dispatch rules and, when the extension is built, the schema and the fake (meta) registration. GPU
tests compare the kernel with the float64 reference on ViT-B/L/H shapes (global 64x64 and odd grids,
windows with padding), check opcheck, torch.compile and CUDA-graph capture, and the whole vit_b
encoder in bf16 against the official fp32 model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from promptseg.configs import VIT_B
from promptseg.ops import (
    DISABLE_ENV,
    available_kernels,
    extension_loaded,
    rel_pos_table,
    token_attention,
    vit_attention,
    vit_attention_reference,
)
from promptseg.ops import encoder_attention  # the module: its dispatch is monkeypatched, its internals checked
from tests._support import cuda_predictors, relative_error
from tests.ops._support import direct_attention

SCHEMA = (
    "promptseg::vit_attention(Tensor qkv, int num_heads, Tensor? rel_pos_h, Tensor? rel_pos_w, "
    "int window_size, Tensor? qkv_bias) -> Tensor"
)
TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 3e-3}

needs_extension = pytest.mark.skipif(
    not (extension_loaded() and hasattr(torch.ops.promptseg, "vit_attention")),
    reason="promptseg._C with vit_attention is not built (it needs nvcc and a CUDA build of torch at install time)",
)


def make_inputs(
    batch: int,
    height: int,
    width: int,
    heads: int,
    head_dim: int,
    table_rows: tuple[int, int] | None,
    with_bias: bool,
    dtype: torch.dtype,
    device: str = "cuda",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Random (qkv (B, H, W, 3C), rel_pos_h (Lh, d), rel_pos_w (Lw, d), qkv_bias (3C,)), never zeros.

    Table entries are 0.1 * N(0, 1), as :func:`tests._support.randomize_` gives the models.
    """
    generator = torch.Generator().manual_seed(seed)
    channels = heads * head_dim

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=generator)).to(device=device, dtype=dtype)

    qkv = randn(batch, height, width, 3 * channels)
    rel_h = rel_w = None
    if table_rows is not None:
        rel_h, rel_w = randn(table_rows[0], head_dim, scale=0.1), randn(table_rows[1], head_dim, scale=0.1)
    bias = randn(3 * channels, scale=0.5) if with_bias else None
    return qkv, rel_h, rel_w, bias


def reference64(qkv, heads, rel_h, rel_w, window_size, bias) -> torch.Tensor:
    """:func:`vit_attention_reference` in float64 on the same (16-bit) values."""

    def double(tensor):
        return None if tensor is None else tensor.double()

    return vit_attention_reference(qkv.double(), heads, double(rel_h), double(rel_w), window_size, double(bias))


def poison_cuda_cache() -> None:
    """Leave NaN in the blocks of the CUDA caching allocator, so that an output the kernel fails to
    write (or a temporary it reads before writing) shows up as NaN."""
    large = torch.full((1 << 29,), float("nan"), dtype=torch.float16, device="cuda")  # 1 GiB, large pool
    small = [torch.full((1 << 18,), float("nan"), dtype=torch.float16, device="cuda") for _ in range(16)]
    del large, small


# ---- CPU: the reference against a direct float64 formula -------------------------------------


def _direct_rel_pos_bias(q, rel_pos_h, rel_pos_w, height, width):
    """bias[i, j] = q_i . Rh[y_i, y_j] + q_i . Rw[x_i, x_j] for a row-major (height, width) grid."""
    table_h = rel_pos_table(height, height, rel_pos_h)
    table_w = rel_pos_table(width, width, rel_pos_w)
    ys = torch.arange(height).repeat_interleave(width)
    xs = torch.arange(width).repeat(height)
    bias_h = torch.einsum("ic,ijc->ij", q, table_h[ys][:, ys])
    bias_w = torch.einsum("ic,ijc->ij", q, table_w[xs][:, xs])
    return bias_h + bias_w


@pytest.mark.parametrize("height, width, heads, head_dim", [(37, 53, 2, 16), (8, 8, 3, 8), (1, 5, 1, 4)])
def test_global_vit_attention_equals_direct_formula(height, width, heads, head_dim):
    generator = torch.Generator().manual_seed(height * width)
    channels = heads * head_dim
    qkv = torch.randn(2, height, width, 3 * channels, generator=generator, dtype=torch.float64)
    rel_h = torch.randn(2 * height - 1, head_dim, generator=generator, dtype=torch.float64)
    rel_w = torch.randn(2 * width - 1, head_dim, generator=generator, dtype=torch.float64)
    out = vit_attention(qkv, heads, rel_h, rel_w, window_size=0, qkv_bias=None)
    assert out.shape == (2, height, width, channels)
    tokens = qkv.reshape(2, height * width, 3, heads, head_dim)
    for batch in range(2):
        for head in range(heads):
            q, k, v = (tokens[batch, :, i, head] for i in range(3))
            expected = direct_attention(q, k, v, _direct_rel_pos_bias(q, rel_h, rel_w, height, width))
            actual = out[batch].reshape(height * width, heads, head_dim)[:, head]
            assert relative_error(actual, expected) < 1e-12


def test_vit_attention_chunking_does_not_change_results(monkeypatch):
    generator = torch.Generator().manual_seed(1)
    qkv = torch.randn(3, 9, 11, 3 * 16, generator=generator)
    rel_h, rel_w = torch.randn(17, 8, generator=generator), torch.randn(21, 8, generator=generator)
    whole = vit_attention(qkv, 2, rel_h, rel_w, 0, None)
    monkeypatch.setattr(encoder_attention, "_MAX_CHUNK_ELEMENTS", 99 * 99 * 2)
    assert torch.allclose(vit_attention(qkv, 2, rel_h, rel_w, 0, None), whole, atol=1e-6)


def test_op_input_checks():
    with pytest.raises(ValueError, match=r"qkv of shape \(B, H, W, 3\*C\)"):
        vit_attention(torch.zeros(1, 4, 4, 10), 2, None, None, 0, None)
    with pytest.raises(ValueError, match="rel_pos_h must be"):
        vit_attention(torch.zeros(1, 4, 4, 24), 2, torch.zeros(7, 5), torch.zeros(7, 4), 0, None)
    with pytest.raises(ValueError, match="key_padding_mask must be a bool tensor of shape"):
        token_attention(torch.zeros(1, 2, 8), torch.zeros(1, 3, 8), torch.zeros(1, 3, 8), 2, torch.ones(1, 2, dtype=torch.bool))


# ---- CPU: shapes, dispatch, registration -------------------------------------------------------


@pytest.mark.parametrize(
    "shape, heads, window, has_rel, expected",
    [
        ((1, 64, 64, 3 * 768), 12, 14, True, True),  # vit_b windowed
        ((1, 64, 64, 3 * 1280), 16, 0, True, True),  # vit_h global (head_dim 80)
        ((2, 37, 53, 3 * 1024), 16, 0, True, True),  # odd global grid
        ((1, 64, 64, 3 * 256), 8, 14, True, False),  # head_dim 32
        ((1, 64, 64, 3 * 2048), 16, 0, True, False),  # head_dim 128
        ((1, 100, 100, 3 * 768), 12, 0, True, False),  # rel-pos logits would not fit shared memory
        ((1, 100, 100, 3 * 768), 12, 0, False, True),  # ... without rel-pos there is nothing to keep
        ((1, 64, 64, 3 * 768), 12, 70, True, False),  # window 70: h + w = 140 > 128
    ],
)
@needs_extension  # the limits are the extension's (promptseg.ops.kernel_limits)
def test_kernel_supports(shape, heads, window, has_rel, expected):
    assert encoder_attention.kernel_supports(shape, heads, window, has_rel) is expected


@pytest.fixture
def kernel_spy(monkeypatch):
    """Pretend the extension and a capable GPU exist: dispatch hands back a spy kernel that records
    its calls and returns a sentinel tensor."""
    calls = []
    sentinel = torch.zeros(1)

    def spy(*args):
        calls.append(args)
        return sentinel

    monkeypatch.setattr(
        encoder_attention, "kernel_for", lambda name, *tensors, backend: spy if backend == "auto" else None
    )
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    return calls, sentinel


@needs_extension  # the shape limits are the extension's
def test_dispatch_sends_only_supported_inputs_to_the_kernel(kernel_spy):
    calls, sentinel = kernel_spy
    qkv, rel_h, rel_w, bias = make_inputs(1, 9, 11, 2, 64, (13, 13), True, torch.bfloat16, device="cpu")
    assert vit_attention(qkv, 2, rel_h, rel_w, 7, bias) is sentinel
    expected_args = (qkv, 2, rel_h, rel_w, 7, bias)
    assert len(calls) == 1 and len(calls[0]) == len(expected_args)
    assert all(actual is given for actual, given in zip(calls[0], expected_args))

    def runs_reference(*args, **kwargs) -> bool:
        before = len(calls)
        out = vit_attention(*args, **kwargs)
        return out is not sentinel and len(calls) == before

    assert runs_reference(qkv, 2, rel_h, rel_w, 7, bias, backend="reference")
    small_qkv, small_h, small_w, _ = make_inputs(1, 9, 11, 2, 32, (13, 13), False, torch.bfloat16, device="cpu")
    assert runs_reference(small_qkv, 2, small_h, small_w, 7, None)  # head_dim 32
    wide_qkv, wide_h, wide_w, _ = make_inputs(1, 5, 124, 1, 64, (9, 247), False, torch.bfloat16, device="cpu")
    assert runs_reference(wide_qkv, 1, wide_h, wide_w, 0, None)  # 5 + 124 > 128
    strided = qkv.transpose(1, 2).contiguous().transpose(1, 2)
    assert runs_reference(strided, 2, rel_h, rel_w, 7, bias)  # not contiguous
    trained = qkv.clone().requires_grad_()
    assert runs_reference(trained, 2, rel_h, rel_w, 7, bias)  # the kernel has no backward
    with torch.no_grad():
        assert vit_attention(trained, 2, rel_h, rel_w, 7, bias) is sentinel


def test_dispatch_needs_every_tensor_on_the_qkv_device():
    qkv, rel_h, rel_w, bias = make_inputs(1, 4, 4, 1, 64, (7, 7), True, torch.bfloat16, device="cpu")
    with FakeTensorMode():
        fake_qkv = torch.empty(qkv.shape, dtype=qkv.dtype, device="cuda")
        fake_table = torch.empty(7, 64, dtype=qkv.dtype, device="cuda")
    assert not encoder_attention._kernel_applies(fake_qkv, 1, rel_h, rel_w, 0, None)  # tables on the CPU
    assert not encoder_attention._kernel_applies(fake_qkv, 1, fake_table, fake_table, 0, bias)  # bias on the CPU


@pytest.mark.parametrize("case", ["cpu-bf16", "cpu-fp32", "backend-reference", "kernels-disabled"])
def test_dispatch_falls_back_to_the_reference(case, monkeypatch):
    qkv, rel_h, rel_w, bias = make_inputs(2, 9, 11, 2, 64, (13, 13), True, torch.bfloat16, device="cpu")
    reference_calls = []
    original = encoder_attention.vit_attention_reference

    def counting_reference(*args):
        reference_calls.append(args)
        return original(*args)

    monkeypatch.setattr(encoder_attention, "vit_attention_reference", counting_reference)
    backend = "reference" if case == "backend-reference" else "auto"
    if case == "kernels-disabled":
        monkeypatch.setenv(DISABLE_ENV, "1")
    if case == "cpu-fp32":
        qkv, rel_h, rel_w, bias = (tensor.float() for tensor in (qkv, rel_h, rel_w, bias))
    if case in ("backend-reference", "kernels-disabled"):
        # CUDA bf16 inputs, without a GPU: fake tensors; the reference runs on them too.
        with FakeTensorMode(allow_non_fake_inputs=True):
            fake = [torch.empty(t.shape, dtype=t.dtype, device="cuda") for t in (qkv, rel_h, rel_w, bias)]
            out = vit_attention(fake[0], 2, fake[1], fake[2], 7, fake[3], backend=backend)
        assert out.shape == (2, 9, 11, 128) and out.device.type == "cuda"
    else:
        out = vit_attention(qkv, 2, rel_h, rel_w, 7, bias, backend=backend)
        assert torch.equal(out, original(qkv, 2, rel_h, rel_w, 7, bias))
    assert len(reference_calls) == 1


@needs_extension
def test_op_schema_is_registered():
    assert str(torch.ops.promptseg.vit_attention.default._schema) == SCHEMA
    assert "vit_attention" in available_kernels()


@needs_extension
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape, heads, window", [((2, 37, 53, 3 * 1280), 16, 0), ((3, 64, 64, 3 * 768), 12, 14)])
def test_fake_registration_gives_the_output_shape(dtype, shape, heads, window):
    head_dim = shape[-1] // (3 * heads)
    rows = 27 if window else 127
    expected = (*shape[:3], shape[-1] // 3)
    meta_qkv = torch.empty(shape, dtype=dtype, device="meta")
    meta_table = torch.empty(rows, head_dim, dtype=dtype, device="meta")
    out = torch.ops.promptseg.vit_attention(meta_qkv, heads, meta_table, meta_table, window, None)
    assert out.shape == expected and out.dtype == dtype and out.device.type == "meta"
    with FakeTensorMode():
        qkv = torch.empty(shape, dtype=dtype, device="cuda")
        table = torch.empty(rows, head_dim, dtype=dtype, device="cuda")
        bias = torch.empty(shape[-1], dtype=dtype, device="cuda")
        out = torch.ops.promptseg.vit_attention(qkv, heads, table, table, window, bias)
    assert out.shape == expected and out.dtype == dtype and out.device.type == "cuda"


# ---- GPU: the kernel ----------------------------------------------------------------------------

# name: (batch, height, width, heads, head_dim, window, rel-pos table rows)
GPU_CASES = {
    "vit_b-global": (1, 64, 64, 12, 64, 0, (127, 127)),
    "vit_b-window": (3, 64, 64, 12, 64, 14, (27, 27)),
    "vit_l-global-odd": (2, 37, 53, 16, 64, 0, (127, 127)),  # tables interpolated to 73 and 105 rows
    "vit_l-window": (8, 64, 64, 16, 64, 14, (27, 27)),
    "vit_h-global": (1, 64, 64, 16, 80, 0, (127, 127)),
    "vit_h-global-odd": (1, 37, 53, 16, 80, 0, (127, 127)),
    "vit_h-window": (8, 64, 64, 16, 80, 14, (27, 27)),
    "vit_h-window-odd": (2, 37, 53, 16, 80, 14, (27, 27)),  # padded to 42 x 56
    "narrow-global": (2, 3, 5, 2, 64, 0, (9, 9)),  # fewer than 8 columns per grid row
    "tiny-window": (2, 5, 3, 2, 80, 2, (3, 3)),  # 2 x 2 windows, padded to 6 x 4
}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("case", list(GPU_CASES))
def test_kernel_matches_float64_reference(case, dtype):
    batch, height, width, heads, head_dim, window, rows = GPU_CASES[case]
    qkv, rel_h, rel_w, bias = make_inputs(batch, height, width, heads, head_dim, rows, True, dtype)
    expected = reference64(qkv, heads, rel_h, rel_w, window, bias)
    poison_cuda_cache()
    out = torch.ops.promptseg.vit_attention(qkv, heads, rel_h, rel_w, window, bias)
    assert out.shape == (batch, height, width, heads * head_dim) and out.dtype == dtype
    assert torch.isfinite(out).all(), "NaN/inf in the output: a position was not written or the softmax overflowed"
    assert relative_error(out, expected) <= TOLERANCE[dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("window", [0, 7])
@pytest.mark.parametrize("with_rel, with_bias", [(False, True), (True, False), (False, False)])
def test_kernel_without_rel_pos_or_bias(window, with_rel, with_bias):
    rows = (2 * window - 1,) * 2 if window else (2 * 20 - 1, 2 * 23 - 1)
    qkv, rel_h, rel_w, bias = make_inputs(2, 20, 23, 2, 64, rows if with_rel else None, with_bias, torch.bfloat16)
    expected = reference64(qkv, 2, rel_h, rel_w, window, bias)
    poison_cuda_cache()
    out = torch.ops.promptseg.vit_attention(qkv, 2, rel_h, rel_w, window, bias)
    assert torch.isfinite(out).all()
    assert relative_error(out, expected) <= TOLERANCE[torch.bfloat16]


@pytest.mark.gpu
def test_kernel_takes_fp32_tables_and_bias():
    """Under autocast the projection is bf16 while the parameters stay fp32: cast like the reference."""
    qkv, rel_h, rel_w, bias = make_inputs(1, 30, 30, 2, 80, (27, 27), True, torch.bfloat16)
    args = (2, rel_h.float(), rel_w.float(), 14, bias.float())
    expected = vit_attention_reference(qkv.double(), *(a.double() if torch.is_tensor(a) else a for a in args))
    assert relative_error(torch.ops.promptseg.vit_attention(qkv, *args), expected) <= TOLERANCE[torch.bfloat16]


@pytest.mark.gpu
def test_kernel_rejects_bad_inputs_with_clear_messages():
    qkv, rel_h, rel_w, bias = make_inputs(1, 16, 16, 2, 64, (31, 31), True, torch.bfloat16)
    op = torch.ops.promptseg.vit_attention
    with pytest.raises(RuntimeError, match="expected qkv of dtype bfloat16 or float16, got Float"):
        op(qkv.float(), 2, rel_h, rel_w, 0, bias)
    with pytest.raises(RuntimeError, match="expected head_dim 64 or 80 .*, got 32"):
        op(qkv, 4, rel_h[:, :32], rel_w[:, :32], 0, bias)
    with pytest.raises(RuntimeError, match="expected a contiguous qkv"):
        op(qkv.transpose(1, 2), 2, rel_h, rel_w, 0, bias)
    with pytest.raises(RuntimeError, match=r"expected rel_pos_h of shape \(L, head_dim=64\)"):
        op(qkv, 2, rel_h[:, :16], rel_w, 0, bias)
    with pytest.raises(RuntimeError, match=r"expected qkv_bias of shape \(384,\), got \[383\]"):
        op(qkv, 2, rel_h, rel_w, 0, bias[:-1])
    with pytest.raises(RuntimeError, match="h \\+ w <= 128, got 70 x 70"):
        op(qkv, 2, rel_h, rel_w, 70, bias)


@pytest.mark.gpu
def test_opcheck():
    qkv, rel_h, rel_w, bias = make_inputs(2, 17, 19, 2, 64, (13, 13), True, torch.bfloat16)
    torch.library.opcheck(torch.ops.promptseg.vit_attention.default, (qkv, 2, rel_h, rel_w, 7, bias))
    qkv, rel_h, rel_w, _ = make_inputs(1, 9, 10, 2, 80, (33, 33), False, torch.float16)
    torch.library.opcheck(torch.ops.promptseg.vit_attention.default, (qkv, 2, rel_h, rel_w, 0, None))


@pytest.mark.gpu
def test_torch_compile_runs_the_kernel():
    qkv, rel_h, rel_w, bias = make_inputs(2, 37, 53, 2, 80, (127, 127), True, torch.bfloat16)
    eager = torch.ops.promptseg.vit_attention(qkv, 2, rel_h, rel_w, 0, bias)

    def raw(x):
        return torch.ops.promptseg.vit_attention(x, 2, rel_h, rel_w, 0, bias)

    assert torch.equal(torch.compile(raw, fullgraph=True)(qkv), eager)

    def through_dispatch(x):
        return vit_attention(x, 2, rel_h, rel_w, 0, bias)

    assert torch.equal(torch.compile(through_dispatch)(qkv), eager)


@pytest.mark.gpu
@pytest.mark.parametrize("window, rows", [(14, (27, 27)), (0, (127, 127))], ids=["window", "global-interpolated"])
def test_cuda_graph_capture(window, rows):
    qkv, rel_h, rel_w, bias = make_inputs(2, 37, 53, 2, 64, rows, True, torch.bfloat16)
    new_qkv = make_inputs(2, 37, 53, 2, 64, rows, True, torch.bfloat16, seed=1)[0]
    static_qkv = qkv.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            vit_attention(static_qkv, 2, rel_h, rel_w, window, bias)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = vit_attention(static_qkv, 2, rel_h, rel_w, window, bias)
    static_qkv.copy_(new_qkv)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_out, torch.ops.promptseg.vit_attention(new_qkv, 2, rel_h, rel_w, window, bias))


@pytest.mark.gpu
def test_vit_b_encoder_in_bf16_with_the_kernel_matches_official_fp32(vit_b_pair, images, monkeypatch):
    official_model, model = vit_b_pair
    kernel_runs = []
    original_kernel_for = encoder_attention.kernel_for

    def counting_kernel_for(name, *tensors, backend):
        kernel = original_kernel_for(name, *tensors, backend=backend)
        if kernel is None:
            return None

        def counting_kernel(*args):
            kernel_runs.append(args[0].shape)
            return kernel(*args)

        return counting_kernel

    monkeypatch.setattr(encoder_attention, "kernel_for", counting_kernel_for)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        official, ours = cuda_predictors(official_model, model, images["truck.jpg"])
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    assert len(kernel_runs) == VIT_B.encoder_depth, f"the kernel ran in {len(kernel_runs)} of 12 encoder blocks"
    error = relative_error(ours.features.float(), official.features.float())
    assert np.isfinite(error) and error <= 2e-2
