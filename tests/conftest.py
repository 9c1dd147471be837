"""Fixtures shared by the test suite.

Optional packages (the official ``segment_anything``, pycocotools, onnx, onnxruntime, cv2, TensorRT)
never fail collection: modules that import them at the top use ``pytest.importorskip``, the
fixtures built on the official model skip without it, and a test that imports one of them inside
its body is reported as skipped, not failed, when that package is not installed at all.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from tests._encoder_memo import EncoderMemo
from tests._support import IMAGE_NAMES, TINY, load_image, model_pair

# Top-level names of the optional packages (test extras, benchmark competitors, TensorRT).
OPTIONAL_PACKAGES = frozenset(
    {"segment_anything", "segment_anything_fast", "pycocotools", "cv2", "onnx", "onnxruntime", "tensorrt"}
)


@pytest.fixture(scope="session", autouse=True)
def own_cpu_engine_cache(tmp_path_factory):
    """Which CPU engine embeds images depends on the ONNX Runtime cache and on PROMPTSEG_CPU_ENGINE
    (promptseg.encoders.auto): the suite gets an empty cache of its own and no override, so that
    exports on this machine never change which engine a test runs. Yields the cache root."""
    names = ("PROMPTSEG_CACHE_DIR", "PROMPTSEG_CPU_ENGINE")
    saved = {name: os.environ.get(name) for name in names}
    root = tmp_path_factory.mktemp("promptseg-cache")
    os.environ["PROMPTSEG_CACHE_DIR"] = str(root)
    os.environ.pop("PROMPTSEG_CPU_ENGINE", None)
    yield root
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def images() -> dict:
    """The three test photos as (H, W, 3) uint8 RGB arrays, by file name."""
    return {name: load_image(name) for name in IMAGE_NAMES}


@pytest.fixture(scope="session")
def tiny_pair():
    """(official, promptseg) tiny SAMs with the same random weights."""
    return model_pair(TINY, seed=1)


@pytest.fixture(scope="session")
def sam2_small():
    """A promptseg SAM 2.1 Hiera-t with random weights at a 256 x 256 input (the code paths of 1024,
    16x cheaper): embedding 16 x 16, high-res levels 64 x 64 and 32 x 32, mask inputs 64 x 64."""
    import torch

    from promptseg.sam2 import build_sam2

    torch.manual_seed(0)
    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu", hydra_overrides_extra=["model.image_size=256"])


@pytest.fixture(scope="session")
def vit_b_pair():
    """(official, promptseg) vit_b SAMs with the same random weights."""
    from promptseg.configs import VIT_B

    return model_pair(VIT_B, seed=2)


@pytest.fixture(scope="session")
def vit_b_encoder_memo() -> EncoderMemo:
    """Encoder forwards of the vit_b pair, remembered for the session: a test that sets a photo the
    session has already encoded with the same weights reuses that output inside
    ``vit_b_encoder_memo.active(...)`` (tests/_encoder_memo.py)."""
    return EncoderMemo()


@pytest.fixture(autouse=True)
def _gpu_tests_opt_in_to_the_kernels(request, monkeypatch):
    """GPU tests check the kernels: they opt in (``PROMPTSEG_KERNELS=1``, unless the environment says
    otherwise), since by default the kernels are opt-in until a GPU record verifies them
    (``promptseg.ops.kernel_policy``)."""
    if request.node.get_closest_marker("gpu") is not None:
        from promptseg.ops import KERNELS_ENV

        if KERNELS_ENV not in os.environ:
            monkeypatch.setenv(KERNELS_ENV, "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # the marker, not a keyword: tests/gpu/ holds CPU tests too
            item.add_marker(skip)


def _missing_optional_package(excinfo) -> str | None:
    """The optional package whose absence raised ``excinfo``, if that is what happened."""
    if excinfo is None or not excinfo.errisinstance(ModuleNotFoundError):
        return None
    root = (excinfo.value.name or "").partition(".")[0]
    if root not in OPTIONAL_PACKAGES:
        return None
    try:
        installed = importlib.util.find_spec(root) is not None
    except (ImportError, ValueError):
        installed = True
    return None if installed else root  # a broken import inside an installed package stays a failure


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    package = _missing_optional_package(call.excinfo)
    if package is not None and report.failed:
        path, lineno = item.reportinfo()[:2]
        report.outcome = "skipped"
        report.longrepr = (str(path), (lineno or 0) + 1, f"Skipped: optional package {package} is not installed")


@pytest.fixture(scope="session")
def cpu_engine_cache(tmp_path_factory):
    """A cache root (for PROMPTSEG_CACHE_DIR) holding the bundled model's ONNX Runtime export, float32
    and int8, made once per session (seconds). It is not the suite's own cache (own_cpu_engine_cache),
    so other tests keep choosing torch; a test points PROMPTSEG_CACHE_DIR here with monkeypatch."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from promptseg.bundled import build_bundled_sam
    from promptseg.export import prepare_cpu_engine

    root = tmp_path_factory.mktemp("cpu-engine-cache")
    prepare_cpu_engine(build_bundled_sam(device="cpu"), int8=True, cache_dir=root / "onnxruntime", progress=False)
    return root
