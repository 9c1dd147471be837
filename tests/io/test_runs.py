"""promptseg.io.runs: records mark images done, a re-run plans only the rest, failures are listed.
And promptseg.io.coco's instance files."""

from __future__ import annotations

import json
from pathlib import Path

from promptseg.io import FAILURES, CocoCollection, Failure, RunRecords, plan_resume


def test_records_mark_images_done_and_a_plan_keeps_order(tmp_path):
    records = RunRecords(tmp_path / "out")
    images = [Path("/data") / name for name in ("c.jpg", "a.jpg", "b.jpg")]
    plan = records.plan(images)
    assert plan.todo == tuple(images) and plan.done == () and records.done_names() == frozenset()
    records.write("a.jpg", {"settings": {"k": 1}, "masks": []})
    records.write("b.jpg", json.dumps({"settings": {"k": 2}}))
    assert records.is_done("a.jpg") and not records.is_done("c.jpg")
    assert records.read("b.jpg") == {"settings": {"k": 2}}
    assert records.record_path("a.jpg") == tmp_path / "out" / "records" / "a.jpg.json"
    plan = records.plan(images)
    assert plan.todo == (images[0],) and plan.done == (images[1], images[2])
    assert plan.line("OUT") == "3 image(s): 2 already done in OUT, 1 to do"
    assert records.other_settings({"k": 1}) == ["b.jpg"]


def test_warning_names_done_images_with_other_settings(tmp_path, capsys):
    records = RunRecords(tmp_path)
    records.warn_on_other_settings({"k": 1})
    records.write("x.png", {"settings": {"k": 0}})
    records.warn_on_other_settings({"k": 1})
    assert "1 done image(s) used other settings" in capsys.readouterr().err


def test_failures_are_listed_in_the_ray_engines_format(tmp_path):
    records = RunRecords(tmp_path)
    records.start_failures()
    assert (tmp_path / FAILURES).read_text() == ""
    try:
        raise ValueError("cannot read image /d/bad.png: the file is empty (0 bytes)")
    except ValueError as error:
        records.add_failure(Failure.of("/d/bad.png", "decode", error))
    records.add_failure(Failure("worse.png", "/d/worse.png", "generate", "RuntimeError: boom"))
    lines = (tmp_path / FAILURES).read_text().splitlines()
    assert json.loads(lines[0]) == {
        "file_name": "bad.png", "path": "/d/bad.png", "stage": "decode",
        "error": "ValueError: cannot read image /d/bad.png: the file is empty (0 bytes)",
    }
    assert list(json.loads(lines[1])) == ["file_name", "path", "stage", "error"]
    assert [f.file_name for f in records.failures()] == ["bad.png", "worse.png"]


def test_a_rerun_can_leave_out_or_retry_earlier_failures(tmp_path):
    records = RunRecords(tmp_path)
    records.add_failure(Failure("bad.png", "/d/bad.png", "decode", "ImageReadError: ..."))
    with records.failures_path.open("a") as handle:
        handle.write('{"file_name": "torn')  # a killed run's half line: passed over
    images = ["/d/bad.png", "/d/good.png"]
    assert records.plan(images).todo == tuple(images)
    plan = records.plan(images, retry_failed=False)
    assert plan.todo == ("/d/good.png",) and plan.failed == ("/d/bad.png",)
    assert plan.line("out").endswith(", 1 failed before (not retried)")
    records.start_failures(keep=["bad.png"])
    assert [f.file_name for f in records.failures()] == ["bad.png"]
    records.start_failures()
    assert records.failures() == []


def test_plan_resume_with_any_done_rule():
    plan = plan_resume(range(6), lambda n: n % 3 == 0, lambda n: n == 4)
    assert (plan.todo, plan.done, plan.failed) == ((1, 2, 5), (0, 3), (4,))


def test_coco_collection_writes_a_dataset_and_results(tmp_path):
    coco = CocoCollection()
    first = coco.add_image("a.jpg", 4, 6)
    rle = {"size": [4, 6], "counts": "0R0"}
    coco.add_instance(first, rle, 3, [0.0, 0.0, 1.0, 3.0], 0.9, stability_score=0.95)
    second = coco.add_image("b.jpg", 4, 6)
    dataset_path, results_path = coco.write(tmp_path / "annotations.json", tmp_path / "results.json")
    dataset, results = json.loads(dataset_path.read_text()), json.loads(results_path.read_text())
    assert (first, second) == (1, 2) and [image["id"] for image in dataset["images"]] == [1, 2]
    assert dataset["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    assert dataset["annotations"] == [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle, "area": 3,
                                       "bbox": [0.0, 0.0, 1.0, 3.0], "iscrowd": 0}]
    assert results == [{"image_id": 1, "category_id": 1, "segmentation": rle, "area": 3, "bbox": [0.0, 0.0, 1.0, 3.0],
                        "score": 0.9, "stability_score": 0.95}]
