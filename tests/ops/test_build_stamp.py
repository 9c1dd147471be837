"""The build stamp of promptseg._C (promptseg/ops/build_stamp.py): the hash of csrc/ and setup.py that a
build carries, how a stale build is told from a current one, and how `promptseg info` reports it.
CPU only: a library file here is a few bytes holding the marker, as csrc/module.cpp compiles it in."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from promptseg.cli import info
from promptseg.ops import build_stamp_status, dispatch, extension_build_stamp
from promptseg.ops.build_stamp import (
    STAMP_MARKER,
    UNSTAMPED,
    checkout_root,
    file_stamp,
    source_stamp,
    stamp_inputs,
)

ROOT = Path(__file__).resolve().parents[2]


def load_summarize():
    spec = importlib.util.spec_from_file_location("gpu_summarize", ROOT / "tests" / "gpu" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the stamp's inputs: csrc/ (sources and README) and setup.py."""
    shutil.copytree(ROOT / "csrc", tmp_path / "csrc")
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    return tmp_path


def library(path: Path, stamp: str) -> Path:
    """A stand-in for a built .so: binary bytes around the marked stamp."""
    path.write_bytes(b"\x7fELF\x00" + STAMP_MARKER + stamp.encode() + b"\x00more bytes")
    return path


def test_this_checkout_has_a_stamp_over_csrc_and_setup_py():
    assert checkout_root() == ROOT
    stamp = source_stamp()
    assert stamp is not None and len(stamp) == 64 and int(stamp, 16) >= 0
    inputs = [path.relative_to(ROOT).as_posix() for path in stamp_inputs(ROOT)]
    assert "csrc/module.cpp" in inputs and inputs[-1] == "setup.py"
    assert "csrc/README.md" not in inputs


def test_the_stamp_follows_the_sources(checkout: Path):
    stamp = source_stamp(checkout)
    assert stamp == source_stamp(ROOT)  # the path of the checkout does not enter it
    (checkout / "csrc" / "README.md").write_text("documentation only\n")
    assert source_stamp(checkout) == stamp
    os.utime(checkout / "csrc" / "module.cpp")  # touched, same content
    assert source_stamp(checkout) == stamp
    with (checkout / "csrc" / "module.cpp").open("a") as file:
        file.write("// an edit\n")
    edited = source_stamp(checkout)
    assert edited != stamp
    (checkout / "csrc" / "new_kernel.cu").write_text("// a new source\n")
    assert source_stamp(checkout) not in (stamp, edited)
    with (checkout / "setup.py").open("a") as file:
        file.write("# an edit\n")
    assert source_stamp(checkout) not in (stamp, edited)


def test_no_sources_no_stamp(tmp_path: Path):
    assert source_stamp(tmp_path) is None
    assert build_stamp_status("0" * 64, tmp_path) == "no sources"


def test_a_library_is_read_without_loading_it(tmp_path: Path, checkout: Path):
    stamp = source_stamp(checkout)
    built = library(tmp_path / "_C.so", stamp)
    assert file_stamp(built) == stamp
    assert build_stamp_status(file_stamp(built), checkout) == "matches"
    with (checkout / "csrc" / "mask_postprocess.cu").open("a") as file:
        file.write("// changed after the build\n")
    assert build_stamp_status(file_stamp(built), checkout) == "stale"
    assert file_stamp(library(tmp_path / "unstamped.so", UNSTAMPED)) == UNSTAMPED
    assert build_stamp_status(UNSTAMPED, checkout) == "unstamped"
    (tmp_path / "old.so").write_bytes(b"\x7fELF built before stamps")
    assert file_stamp(tmp_path / "old.so") is None
    assert build_stamp_status(None, checkout) == "unstamped"
    assert file_stamp(tmp_path / "absent.so") is None


def test_module_cpp_compiles_in_the_marker_this_module_reads():
    text = (ROOT / "csrc" / "module.cpp").read_text()
    assert f'"{STAMP_MARKER.decode()}" PROMPTSEG_BUILD_STAMP' in text
    assert f'#define PROMPTSEG_BUILD_STAMP "{UNSTAMPED}"' in text


def test_session_stamp_check_of_a_library_file(tmp_path: Path):
    """tests/gpu/session.sh decides between reusing and rebuilding with `summarize.py stamp FILE`."""
    summarize = load_summarize()
    assert summarize.stamp_state(library(tmp_path / "current.so", source_stamp(ROOT))) == "matches"
    assert summarize.stamp_state(library(tmp_path / "stale.so", "f" * 64)) == "stale"
    assert summarize.stamp_state(tmp_path / "absent.so") == "missing"
    command = [sys.executable, str(ROOT / "tests" / "gpu" / "summarize.py"), "stamp"]
    result = subprocess.run([*command, str(tmp_path / "stale.so")], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (1, "stale")
    result = subprocess.run([*command, str(tmp_path / "current.so")], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "matches")


def test_extension_build_stamp_comes_from_the_loaded_module(monkeypatch):
    monkeypatch.setattr(dispatch, "_extension", lambda: SimpleNamespace(build_stamp=lambda: "a" * 64))
    assert extension_build_stamp() == "a" * 64
    monkeypatch.setattr(dispatch, "_extension", lambda: SimpleNamespace())  # built before stamps
    assert extension_build_stamp() is None
    monkeypatch.setattr(dispatch, "_extension", lambda: None)  # not built
    assert extension_build_stamp() is None


@pytest.mark.parametrize(
    ("loaded", "stamp", "expected"),
    [
        (False, None, "none: the CUDA extension was not built"),
        (True, None, "none: built before build stamps (rebuild it)"),
        (True, "current", "matches csrc/ and setup.py"),
        (True, "b" * 64, "STALE: csrc/ or setup.py changed since this build"),
        (True, UNSTAMPED, "built without setup.py's stamp header"),
    ],
)
def test_info_reports_the_stamp(monkeypatch, loaded, stamp, expected):
    stamp = source_stamp() if stamp == "current" else stamp
    monkeypatch.setattr(info, "extension_loaded", lambda: loaded)
    monkeypatch.setattr(info, "extension_build_stamp", lambda: stamp)
    report = info.build_stamp_report()
    assert expected in report
    if stamp is not None and loaded:
        assert report.startswith(stamp[:12])


def test_setup_py_builds_without_the_project_table():
    """PROMPTSEG_BUILD_EXT_ONLY=1: setup.py reads no pyproject.toml (whose license string needs setuptools
    >= 77), as the GPU machine's build does."""
    env = {**os.environ, "PROMPTSEG_SKIP_CUDA": "1", "PROMPTSEG_BUILD_EXT_ONLY": "1"}
    result = subprocess.run([sys.executable, "setup.py", "--name", "--license"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "promptseg"
    assert "Apache" not in result.stdout  # the project table was not read
