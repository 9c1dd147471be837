"""The command line's run rules (promptseg.cli.runs) and what `promptseg info` says about the kernels."""

from __future__ import annotations

import json

import pytest

from promptseg.cli import main
from promptseg.cli.runs import ImageRun, output_file, output_folder, plan_images, run_exit_code
from promptseg.io import RunRecords
from promptseg.ops import KernelPolicy


@pytest.mark.parametrize(
    "successes, failures, strict, code",
    [(3, 0, False, 0), (3, 2, False, 0), (0, 2, False, 1), (3, 2, True, 1), (0, 0, False, 0), (0, 0, True, 0)],
)
def test_exit_status_is_1_only_when_nothing_succeeded_or_strict(successes, failures, strict, code):
    """Guards against: a folder run with one bad image reported as failed (or a run of bad images as fine)."""
    assert run_exit_code(successes, failures, strict) == code


def test_an_image_run_lists_failures_as_the_ray_engine_does(tmp_path, capsys):
    records = RunRecords(tmp_path / "out")
    images = [tmp_path / name for name in ("a.png", "b.png", "c.png")]
    run = ImageRun("promptseg test", records, records.plan(images))
    assert run.attempt(images[0], "decode", lambda: 7) == 7
    assert run.attempt(images[1], "generate", lambda: 1 / 0) is None
    results = run.attempt_batch(images, ["ok", "bad", "ok"], "generate",
                                lambda batch: [1 / 0 if item == "bad" else item for item in batch])
    assert results == ["ok", None, "ok"]
    run.succeed(2)
    lines = [json.loads(line) for line in records.failures_path.read_text().splitlines()]
    assert lines == [
        {"file_name": "b.png", "path": str(images[1]), "stage": "generate", "error": "ZeroDivisionError: division by zero"},
        {"file_name": "b.png", "path": str(images[1]), "stage": "generate", "error": "ZeroDivisionError: division by zero"},
    ]
    assert run.finish() == 0 and "2 image(s) failed" in capsys.readouterr().err
    # The next run keeps the failures it does not retry, and drops the others.
    plan = plan_images(records, images, retry_failed=False)
    assert plan.failed == (images[1],)
    ImageRun("promptseg test", records, plan)
    assert len(records.failures()) == 2
    ImageRun("promptseg test", records, plan_images(records, images, retry_failed=True))
    assert records.failures() == []


def test_out_checks(tmp_path):
    existing = tmp_path / "file.json"
    existing.write_text("{}")
    assert output_file(existing) == existing and output_folder(tmp_path) == tmp_path
    with pytest.raises(ValueError, match="is an existing file; --out names a folder"):
        output_folder(existing)
    with pytest.raises(ValueError, match="is a folder; --out names the file"):
        output_file(tmp_path)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        output_file(existing / "inside.json")


def test_info_says_whether_the_kernels_run_and_why(monkeypatch, capsys):
    import promptseg.cli.info

    monkeypatch.setattr(promptseg.cli.info, "kernel_policy", lambda: KernelPolicy(False, "opt-in: no record covers 9.0"))
    assert main(["info"]) == 0
    assert "kernels_in_force off by default: opt-in: no record covers 9.0" in capsys.readouterr().out
