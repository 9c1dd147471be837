"""The records of a GPU session (tests/gpu/summarize.py), from made-up logs: one record file and one log
file, what ran out of time, and a rerun merged into the first run's record. CPU only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gpu_summarize", ROOT / "tests" / "gpu" / "summarize.py")
summarize = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summarize)

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.ops.test_a" name="test_one" file="tests/ops/test_a.py" time="0.1"/>
<testcase classname="tests.ops.test_a" name="test_two" file="tests/ops/test_a.py" time="0.1"><failure message="x"/></testcase>
<testcase classname="tests.test_b" name="test_three" file="tests/test_b.py" time="0.1"><skipped message="no tensorrt"/></testcase>
</testsuite></testsuites>"""


def session_logs(path: Path, checks: list[str], results: list[str] = ()) -> Path:
    path.mkdir(parents=True)
    (path / "env.json").write_text(json.dumps({"device": "NVIDIA H100 80GB HBM3", "gpu": "h100", "torch": "2.11.0"}))
    (path / "checks.tsv").write_text("".join(line + "\n" for line in checks))
    (path / "results.tsv").write_text("".join(line + "\n" for line in results))
    return path


def test_one_record_and_one_log_file(tmp_path: Path):
    logs = session_logs(tmp_path / "logs", [
        "build\tbuild\tpassed\t0\t150\tbuild.log\tsm_90, 16 jobs",
        "tests\ttests\tpassed\t0\t100\ttests.log\t",
        "encoder\tbenchmark\tpassed\t0\t80\tencoder.log\t",
        "racecheck\tsanitizer\tfailed\t99\t60\tracecheck.log\t",
        "memcheck\tsanitizer\tskipped\t\t0\t\tno time left in the 510 s budget",
    ], ["encoder\tencoder_h100.json\tfile"])
    (logs / "build.log").write_text("".join(f"line {i}\n" for i in range(1000)))
    (logs / "tests.log").write_text("tests/ops/test_a.py::test_one PASSED\n")
    (logs / "pytest_gpu.xml").write_text(JUNIT)
    (logs / "encoder.log").write_text("rows\n")
    (logs / "racecheck.log").write_text("RACECHECK SUMMARY: 3 hazards displayed (1 error, 2 warnings)\n")
    out = tmp_path / "out"
    summarize.write_records(logs, out, "build tests encoder racecheck memcheck")
    assert sorted(path.name for path in out.iterdir()) == ["gpu_checks_h100.json", "session_log.txt"]
    record = json.loads((out / "gpu_checks_h100.json").read_text())
    assert record["ok"] is False and record["counts"] == {"passed": 3, "failed": 1, "timeout": 0, "skipped": 1}
    assert record["tests"]["by_file"]["tests/ops/test_a.py"]["failed"] == 1
    assert record["tests"]["failures"] == ["tests/ops/test_a.py::test_two"]
    assert record["sanitizer"]["racecheck"] == {"status": "failed", "seconds": 60.0, "hazards": 3, "errors": 1, "warnings": 2}
    assert record["benchmarks"]["encoder"] == {"status": "passed", "file": "encoder_h100.json", "returned_as": "file"}
    assert record["short_of_time"] == ["memcheck"]
    log = (out / "session_log.txt").read_text()
    assert "==== build: passed (exit 0, 150 s): sm_90, 16 jobs" in log
    assert "line 0\n" in log and "line 999\n" in log and "line 500\n" not in log  # start and end of a long log
    assert "RACECHECK SUMMARY" in log


def test_a_rerun_fills_in_what_the_first_run_skipped(tmp_path: Path):
    first = summarize.build_record(session_logs(tmp_path / "first", [
        "build\tbuild\tpassed\t0\t150\t\t",
        "memcheck\tsanitizer\tskipped\t\t0\t\tno time left in the 510 s budget",
    ]), "all")
    second = summarize.build_record(session_logs(tmp_path / "second", [
        "build\tbuild\tpassed\t0\t0\t\treused",
        "memcheck\tsanitizer\tpassed\t0\t70\t\t",
    ]), "memcheck")
    merged = summarize.merge_records(first, second)
    assert [(check["name"], check["status"]) for check in merged["checks"]] == [("build", "passed"), ("memcheck", "passed")]
    assert merged["sanitizer"]["memcheck"]["status"] == "passed"
    assert merged["ok"] is True and merged["short_of_time"] == []
    assert [entry["steps"] for entry in merged["merged_from"]] == ["all", "memcheck"]


def test_the_rerun_names_steps_that_session_sh_takes():
    no_time = "no time left in the 510 s budget"
    checks = [{"name": name, "status": "skipped", "note": no_time} for name in ("wheels", "info", "memcheck", "racecheck")]
    assert summarize.short_of_time(checks) == ["build", "memcheck", "racecheck"]
