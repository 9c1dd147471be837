"""Robust on first contact (issue 23), the command line: a bad file never stops a run and never
prints a traceback; bad arguments exit 2, runs with failures 1.

Every command that reads images gets a folder of one good image and one file of each bad kind
(corrupt, truncated, huge header, zero-byte, not an image): each bad file is listed in
failures.jsonl in the Ray engine's format, the good one is done, and the exit status is 0 (1
with --strict, or when nothing succeeded). The bundled model, 64x64 images and the smallest grids.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from promptseg.cli import main
from promptseg.data.synthetic import generate_scene

GOOD = "000000000001.png"
# name -> (file name, what its failure must say)
BAD_KINDS = {
    "corrupt": ("000000000002.png", "not an image"),
    "truncated": ("000000000003.png", "truncated"),
    "huge header": ("000000000004.png", "over the limit"),
    "zero-byte": ("000000000005.jpg", "empty"),
    "not an image": ("000000000006.jpg", "not an image"),
}


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_bad_file(folder: Path, kind: str) -> Path:
    """One bad file of ``kind`` (a key of :data:`BAD_KINDS`) in ``folder``."""
    name, _ = BAD_KINDS[kind]
    path = folder / name
    if kind == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n this is no PNG")
    elif kind == "truncated":
        whole = folder / "whole.tmp.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(whole, format="PNG")
        data = whole.read_bytes()
        whole.unlink()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "huge header":  # claims 12000 x 12000 RGB pixels, holds none
        header = struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b""))
    elif kind == "zero-byte":
        path.write_bytes(b"")
    else:
        path.write_text("just some notes, saved as .jpg")
    return path


def write_good_image(folder: Path, name: str = GOOD) -> Path:
    Image.fromarray(generate_scene(3).image).resize((64, 64)).save(folder / name)
    return folder / name


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(a folder of one good image and every bad kind, a folder of bad files only, a folder of detections
    (``<folder name>.json``: a box on each image of that folder))."""
    mixed = tmp_path_factory.mktemp("mixed")
    write_good_image(mixed)
    bad_only = tmp_path_factory.mktemp("bad_only")
    for kind in BAD_KINDS:
        write_bad_file(mixed, kind)
        write_bad_file(bad_only, kind)
    detections = tmp_path_factory.mktemp("dets")
    for folder in (mixed, bad_only):
        ids = [int(path.stem) for path in folder.iterdir()]
        (detections / f"{folder.name}.json").write_text(json.dumps([
            {"image_id": image_id, "bbox": [8, 8, 30, 30], "score": 0.9, "category_id": 1} for image_id in ids
        ]))
    return mixed, bad_only, detections


# command -> (arguments before --out, whether --out is a file, where failures.jsonl lands relative to --out)
COMMANDS = {
    "predict": (["predict", "{src}"], False, "."),
    "amg": (["amg", "{src}", "--points-per-side", "2"], False, "."),
    "find": (["find", "{src}", "--text", "red circle", "--points-per-side", "2"], False, "."),
    "zeroshot edges": (["zeroshot", "edges", "{src}", "--points-per-side", "2"], False, "."),
    "zeroshot proposals": (["zeroshot", "proposals", "{src}", "--points-per-side", "2", "--k", "3"], True, "work"),
    "zeroshot instances": (["zeroshot", "instances", "{src}", "--detections", "{dets}"], True, "work"),
}


def _arguments(command: str, source: Path, detections: Path, out: Path) -> list[str]:
    template, out_is_file, _ = COMMANDS[command]
    arguments = [part.format(src=source, dets=detections / f"{source.name}.json") for part in template]
    return [*arguments, "--out", str(out / "result.json" if out_is_file else out)]


def _failures(command: str, out: Path) -> list[dict]:
    where = out / "result.json.work" if COMMANDS[command][2] == "work" else out
    return [json.loads(line) for line in (where / "failures.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_bad_file_is_listed_and_the_run_goes_on(command, folders, tmp_path, capsys):
    """Guards against: one corrupt, truncated, huge-header, zero-byte or non-image file stopping a run."""
    mixed, _, detections = folders
    out = tmp_path / "out"
    assert main(_arguments(command, mixed, detections, out)) == 0
    failures = {failure["file_name"]: failure for failure in _failures(command, out)}
    assert sorted(failures) == sorted(name for name, _ in BAD_KINDS.values())
    for name, problem in BAD_KINDS.values():
        failure = failures[name]
        assert set(failure) == {"file_name", "path", "stage", "error"}  # the Ray engine's lines
        assert failure["stage"] == "decode" and failure["path"] == str(mixed / name)
        assert failure["error"].startswith("ImageReadError: ") and problem in failure["error"], failure
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{len(BAD_KINDS)} image(s) failed" in err
    for name, _ in BAD_KINDS.values():
        assert f"skipped {name}" in err

    # --strict: any failure is a failed run. A re-run does not retry what failed (the list stays).
    assert main([*_arguments(command, mixed, detections, out), "--strict"]) == 1
    assert "failed before" in capsys.readouterr().out
    assert len(_failures(command, out)) == len(BAD_KINDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_run_where_nothing_succeeds_exits_1(command, folders, tmp_path, capsys):
    _, bad_only, detections = folders
    assert main(_arguments(command, bad_only, detections, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "no image succeeded" in err and "Traceback" not in err


def test_a_recorded_failure_is_retried_only_when_asked(folders, tmp_path, capsys, monkeypatch):
    """Guards against: a folder that can never finish, because each re-run stops at the same file."""
    mixed, _, _ = folders
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    write_good_image(images)
    bad = write_bad_file(images, "zero-byte")
    assert main(["amg", str(images), "--out", str(out), "--points-per-side", "2"]) == 0
    capsys.readouterr()
    calls = []
    import promptseg.cli.amg

    real_read = promptseg.cli.amg.read_image
    monkeypatch.setattr(promptseg.cli.amg, "read_image", lambda path: calls.append(path.name) or real_read(path))
    assert main(["amg", str(images), "--out", str(out)]) == 0
    assert calls == [] and "1 failed before (not retried)" in capsys.readouterr().out
    write_good_image(images, bad.name)  # fixed: --retry-failed picks it up
    assert main(["amg", str(images), "--out", str(out), "--points-per-side", "2", "--retry-failed"]) == 0
    assert calls == [bad.name] and (out / "failures.jsonl").read_text() == ""
    assert (out / "records" / f"{bad.name}.json").is_file()


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_predict_names_a_bad_image_and_exits_1(kind, tmp_path, capsys):
    """Guards against: a traceback from predict on a corrupt image."""
    path = write_bad_file(tmp_path, kind)
    assert main(["predict", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"promptseg predict: error: cannot read image {path}" in err and BAD_KINDS[kind][1] in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["predict", *COMMANDS])
def test_a_zero_byte_checkpoint_is_a_bad_argument(command, folders, tmp_path, capsys):
    """Guards against: a zero-byte .safetensors giving a raw safetensors traceback."""
    mixed, _, detections = folders
    checkpoint = tmp_path / "sam.safetensors"
    checkpoint.write_bytes(b"")
    if command == "predict":
        arguments = ["predict", str(mixed / GOOD), "--out", str(tmp_path / "out")]
    else:
        arguments = _arguments(command, mixed, detections, tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, "--model", "vit_b", "--checkpoint", str(checkpoint)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"checkpoint '{checkpoint}' is an empty file" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["predict", *COMMANDS])
def test_an_out_that_cannot_be_written_is_a_bad_argument(command, folders, tmp_path, capsys):
    """Guards against: --out naming an existing file (a folder where a file is written) giving a traceback."""
    mixed, _, detections = folders
    blocker = tmp_path / "taken"
    if command != "predict" and COMMANDS[command][1]:
        blocker.mkdir()  # --out names a file: a folder is in the way
        arguments = _arguments(command, mixed, detections, tmp_path)[:-1] + [str(blocker)]
    else:
        blocker.write_text("an existing file")
        source = mixed / GOOD if command == "predict" else mixed
        arguments = ["predict", str(source), "--out", str(blocker)] if command == "predict" else \
            _arguments(command, source, detections, tmp_path)[:-1] + [str(blocker)]
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--out {blocker} is" in err and "Traceback" not in err


def test_predict_checks_points_and_boxes_as_the_annotation_api_does(tmp_path, capsys):
    """Guards against: `predict --point 99999,-99999` on a 128x128 image exiting 0 with a mask."""
    image = tmp_path / "square.png"
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(image)
    for arguments, message in (
        (["--point", "99999,-99999"], "points[0] = (99999, -99999) is outside the image (0..128, 0..128 pixels)"),
        (["--point", "5,5", "--point", "5,129"], "points[1] = (5, 129) is outside the image"),
        (["--box", "0,0,300,10"], "box corner (x1, y1) = (300, 10) is outside the image (0..128, 0..128 pixels)"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", str(image), "--out", str(tmp_path / "out"), *arguments])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["predict", str(image), "--out", str(tmp_path / "out"), "--point", "128,0"]) == 0  # the far edge is on it


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_evaluate_names_a_bad_edge_map(kind, tmp_path, capsys):
    """Guards against: Pillow's "image file is truncated" without the file's name."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    bad = write_bad_file(pred, kind)
    bad = bad.rename(bad.with_suffix(".png"))  # edge maps are PNG (or .npy)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(gt / f"{bad.stem}.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "edges", "--gt", str(gt), "--pred", str(pred)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"cannot read {bad}" in err and "Traceback" not in err


def test_predict_on_a_folder_lists_an_image_its_point_falls_outside(tmp_path, capsys):
    """Guards against: one image of a folder that a --point misses stopping the run (or a mask on a point
    the image does not have): it is listed, with the annotation API's message, and the others are done."""
    import json

    folder = tmp_path / "images"
    folder.mkdir()
    write_good_image(folder, "small.png")  # 64 x 64
    Image.fromarray(generate_scene(4).image).save(folder / "large.png")  # 256 x 256
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--point", "100,100", "--out", str(out)]) == 0
    assert json.loads((out / "large.png" / "result.json").read_text())["masks"]
    assert not (out / "small.png").exists()
    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failure["file_name"] == "small.png" and failure["stage"] == "generate"
    assert "outside the image" in failure["error"]
    assert "Traceback" not in capsys.readouterr().err
    # A re-run does nothing more: large.png is done, small.png failed before.
    assert main(["predict", str(folder), "--point", "100,100", "--out", str(out)]) == 0
    assert "1 already done" in capsys.readouterr().out
