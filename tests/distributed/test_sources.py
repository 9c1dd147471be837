"""``promptseg.distributed`` without a cluster: what SOURCE resolves to, bad input, the fault hook's
checks, and ``--engine ray`` without Ray installed (these tests run whether or not Ray is)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

import promptseg.cli
from promptseg.distributed import FaultInjection, RayNotInstalledError, generate_masks, resolve_source


@pytest.fixture
def folder(tmp_path):
    """b.png, a.jpg and c.PNG images, plus a text file that is not an image."""
    for name in ("b.png", "a.jpg", "c.PNG"):
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.md").write_text("not an image")
    return tmp_path


def _names(source) -> list[str]:
    return [path.rsplit("/", 1)[-1] for path in resolve_source(source).paths]


def test_folder_glob_list_and_sequence_resolve_to_sorted_images(folder):
    assert _names(folder) == ["a.jpg", "b.png", "c.PNG"] and not resolve_source(folder).remote
    assert _names(str(folder / "*.png")) == ["b.png"]
    assert _names(folder / "b.png") == ["b.png"]
    listing = folder / "images.txt"
    listing.write_text("# two of them\nc.PNG\n\n" + str(folder / "a.jpg") + "\n")
    assert _names(listing) == ["a.jpg", "c.PNG"]
    assert _names([folder / "c.PNG", str(folder / "a.jpg"), folder / "a.jpg"]) == ["a.jpg", "c.PNG"]
    assert _names(f"file://{folder / 'b.png'}") == ["b.png"]


def test_remote_uris_pass_through_unchanged():
    source = resolve_source(["s3://bucket/images/", "gs://other/x.jpg"])
    assert source.remote and source.paths == ("s3://bucket/images/", "gs://other/x.jpg")


def test_bad_sources_say_what_is_wrong(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="image, folder, file list or glob not found: .*missing"):
        resolve_source(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images"):
        resolve_source(str(tmp_path / "*.gif"))
    with pytest.raises(ValueError, match="mixes remote URIs and local paths"):
        resolve_source([folder / "a.jpg", "s3://bucket/b.jpg"])
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(other / "a.jpg")
    with pytest.raises(ValueError, match="two images share the file name 'a.jpg'"):
        resolve_source(str(tmp_path / "**" / "*.jpg"))
    with pytest.raises(TypeError, match="got int"):
        resolve_source(3)
    with pytest.raises(ValueError, match="names no images"):
        (tmp_path / "empty.txt").write_text("# nothing\n")
        resolve_source(tmp_path / "empty.txt")


def test_bad_options_are_refused_before_ray_starts(folder, tmp_path):
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        generate_masks(folder, tmp_path / "out", workers=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 1.5"):
        generate_masks(folder, tmp_path / "out", batch_size=1.5)
    with pytest.raises(ValueError, match="gpus_per_worker must be a number >= 0, got -1"):
        generate_masks(folder, tmp_path / "out", gpus_per_worker=-1)
    with pytest.raises(ValueError, match="dtype must be one of"):
        generate_masks(folder, tmp_path / "out", dtype="float64")
    with pytest.raises(ValueError, match="after_images must be an int >= 0, got -1"):
        FaultInjection(after_images=-1, marker=str(tmp_path / "m"))


def test_engine_ray_without_ray_says_how_to_install_it(folder, tmp_path, monkeypatch, capsys):
    for name in [name for name in sys.modules if name == "ray" or name.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RayNotInstalledError, match=r'pip install "promptseg\[ray\]"'):
        generate_masks(folder, tmp_path / "out")
    code = promptseg.cli.main(["amg", str(folder), "--out", str(tmp_path / "out"), "--engine", "ray"])
    assert code == 2
    assert 'install it with: pip install "promptseg[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
