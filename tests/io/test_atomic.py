"""promptseg.io's atomic writes: whole files only, the file's mode kept, no temporary file left behind."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from promptseg.io import (
    atomic_path,
    remove_orphaned_temps,
    remove_orphaned_temps_in,
    write_bytes_atomically,
    write_json_atomically,
    write_text_atomically,
)
from promptseg.io.atomic import temp_name


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_bytes_text_and_json_making_folders(tmp_path):
    write_bytes_atomically(tmp_path / "a" / "b.bin", b"\x00\x01")
    write_text_atomically(tmp_path / "c.txt", "héllo")
    write_json_atomically(tmp_path / "d.json", {"x": [1, 2]})
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "c.txt").read_text(encoding="utf-8") == "héllo"
    assert json.loads((tmp_path / "d.json").read_text()) == {"x": [1, 2]}
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["b.bin", "c.txt", "d.json"]


def test_a_new_file_gets_the_ordinary_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        write_bytes_atomically(tmp_path / "new.json", b"{}")
    finally:
        os.umask(umask)
    assert _mode(tmp_path / "new.json") == 0o644  # not mkstemp's 0600


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664, 0o444])
def test_a_rewrite_keeps_the_files_mode(tmp_path, mode):
    path = tmp_path / "out.json"
    path.write_text("{}")
    path.chmod(mode)
    write_json_atomically(path, {"saved": 1})
    assert _mode(path) == mode and json.loads(path.read_text()) == {"saved": 1}
    with atomic_path(path) as temporary:
        temporary.write_text("by any writer")
    assert _mode(path) == mode and path.read_text() == "by any writer"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_json_atomically(path, {"not json": object()})
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(path) as temporary:
            temporary.write_text("half")
            raise RuntimeError("writer failed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_temporary_files_are_recognisable_and_beside_the_target(tmp_path):
    seen = []
    with atomic_path(tmp_path / "model.pth") as temporary:
        seen.append(temporary)
        assert temporary.parent == tmp_path and temporary.is_file() and temporary.stat().st_size == 0
    name = seen[0].name
    assert name.startswith("model.pth.promptseg-") and name.endswith(".tmp") and f"-{os.getpid()}-" in name
    assert not seen[0].exists()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_orphaned_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = _dead_pid()
    output = tmp_path / "annotations.json"
    output.write_text("{}")
    orphan = tmp_path / f"annotations.json.promptseg-{dead}-0123abcd.tmp"
    other_output = tmp_path / f"other.json.promptseg-{dead}-0123abcd.tmp"
    live = tmp_path / temp_name("annotations.json")  # this process: still writing
    unrelated = tmp_path / "annotations.json.backup.tmp"
    for path in (orphan, other_output, live, unrelated):
        path.write_text("partial")
    assert remove_orphaned_temps(output) == [orphan]
    assert not orphan.exists() and other_output.exists() and live.exists() and unrelated.exists()
    assert remove_orphaned_temps_in(tmp_path) == [other_output]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["annotations.json", live.name, unrelated.name])
    assert remove_orphaned_temps_in(tmp_path / "missing") == []


def test_a_killed_writer_leaves_a_temporary_that_the_next_start_removes(tmp_path):
    """kill -9 in the middle of a write: the target keeps its old content; the orphan goes at start-up."""
    output = tmp_path / "out.json"
    output.write_text("old")
    script = (
        "import os, signal, sys\n"
        "from promptseg.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as temporary:\n"
        "    temporary.write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    process = subprocess.run([sys.executable, "-c", script, str(output)], env={**os.environ}, timeout=120)
    assert process.returncode == -9
    assert output.read_text() == "old"
    assert len(list(tmp_path.glob("out.json.promptseg-*.tmp"))) == 1
    assert len(remove_orphaned_temps(output)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
