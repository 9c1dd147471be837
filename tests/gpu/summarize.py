"""The records of a tests/gpu/session.sh run: what each check did, in JSON.

    python tests/gpu/summarize.py env LOGS            # LOGS/env.json: device, torch, CUDA, commit (imports torch)
    python tests/gpu/summarize.py write LOGS OUT      # OUT/summary.json and OUT/gpu_checks_<gpu>.json

``write`` reads only files (no torch): LOGS/env.json, LOGS/checks.tsv (one line per check that
session.sh ran: name, group, status, exit code, seconds, log file, note), the pytest JUnit XML
(or, when pytest was stopped before writing it, its ``-v`` log) and the compute-sanitizer logs.
It is run after every check, so the records are current even when a later check is killed.

``gpu_checks_<gpu>.json`` is the record to commit to benchmarks/results/: device, torch, commit,
passed/failed/skipped counts per test file, and per sanitizer tool and target.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

PYTEST_JUNIT = "pytest_gpu.xml"
PYTEST_LOG = "pytest-gpu.log"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
VERBOSE_LINE = re.compile(r"^(?P<file>[^\s:]*\.py)?::(?P<test>.+?) (?P<outcome>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
VERBOSE_OUTCOME = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "SKIPPED": "skipped",
                   "XFAIL": "xfailed", "XPASS": "xpassed"}
ERROR_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors?")
RACECHECK_SUMMARY = re.compile(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)")


def gpu_tag(device: str) -> str:
    """``h100`` for 'NVIDIA H100 80GB HBM3' (as benchmarks/encoder.py names results), else a sanitised name."""
    match = re.search(r"\b([A-Z]\d{2,3}[A-Z]?)\b", device)
    tag = match.group(1) if match else re.sub(r"[^0-9a-zA-Z]+", "_", device).strip("_")
    return tag.lower() or "unknown"


def commit_of(root: Path) -> str:
    """The checkout's commit (``-dirty`` with local changes outside benchmarks/results/), else $PROMPTSEG_COMMIT, else 'unknown'
    (the device machine gets a copy of the working tree, maybe without .git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        # As benchmarks/harness.py: results left by an earlier run are not a change to the code.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(top,exclude)benchmarks/results"], cwd=root, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("PROMPTSEG_COMMIT") or "unknown"


def write_env(logs: Path) -> dict:
    env = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
           "commit": commit_of(Path(__file__).resolve().parents[2]), "host": platform.node()}
    try:
        import torch

        env.update(torch=torch.__version__, cuda=torch.version.cuda, gpu_visible=torch.cuda.is_available())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env.update(device=props.name, capability="%d.%d" % (props.major, props.minor),
                       multiprocessors=props.multi_processor_count, memory_gib=round(props.total_memory / 2**30, 1))
        else:
            env.update(device="cpu")
    except Exception as error:  # noqa: BLE001  (recorded: the records are still written)
        env.update(device="unknown", torch=None, torch_error=f"{type(error).__name__}: {error}")
    env["gpu"] = gpu_tag(env["device"])
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "env.json").write_text(json.dumps(env, indent=2) + "\n")
    return env


def read_checks(logs: Path) -> list[dict]:
    checks = []
    path = logs / "checks.tsv"
    if not path.is_file():
        return checks
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 6:
            continue
        name, group, status, rc, seconds, log = fields[:6]
        checks.append({"name": name, "group": group, "status": status, "rc": int(rc) if rc.lstrip("-").isdigit() else None,
                       "seconds": float(seconds) if seconds else None, "log": log or None,
                       "note": fields[6] if len(fields) > 6 and fields[6] else None})
    return checks


def _file_of(case: ET.Element) -> str:
    if case.get("file"):
        return case.get("file")
    # xunit2 gives only classname: tests.gpu.test_x[.TestClass] -> tests/gpu/test_x.py
    parts = (case.get("classname") or "").split(".")
    while parts and not parts[-1].startswith("test"):
        parts.pop()
    return "/".join(parts) + ".py" if parts else "(collection)"


def tests_from_junit(path: Path) -> dict | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    by_file: dict[str, Counter] = {}
    failures, skip_reasons = [], Counter()
    for case in root.iter("testcase"):
        if case.find("failure") is not None:
            outcome = "failed"
        elif case.find("error") is not None:
            outcome = "error"
        elif (skipped := case.find("skipped")) is not None:
            outcome = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
            if outcome == "skipped":
                skip_reasons[(skipped.get("message") or "").strip()[:160]] += 1
        else:
            outcome = "passed"
        file = _file_of(case)
        by_file.setdefault(file, Counter())[outcome] += 1
        if outcome in ("failed", "error"):
            failures.append(f"{file}::{case.get('name')}")
    return {"source": "junit", "complete": True, "by_file": by_file, "failures": failures,
            "skip_reasons": dict(skip_reasons.most_common(10))}


def tests_from_log(path: Path) -> dict | None:
    """Fallback when pytest was killed before writing its JUnit file: the ``-v`` lines printed so far."""
    if not path.is_file():
        return None
    by_file: dict[str, Counter] = {}
    failures = []
    for line in path.read_text(errors="replace").splitlines():
        match = VERBOSE_LINE.match(line)
        if match:
            outcome = VERBOSE_OUTCOME[match["outcome"]]
            file = match["file"] or "(unknown)"
            by_file.setdefault(file, Counter())[outcome] += 1
            if outcome in ("failed", "error"):
                failures.append(f"{file}::{match['test']}")
    return {"source": "log (pytest stopped before writing its JUnit file)", "complete": False, "by_file": by_file,
            "failures": failures, "skip_reasons": {}}


def tests_record(logs: Path) -> dict | None:
    record = tests_from_junit(logs / PYTEST_JUNIT) if (logs / PYTEST_JUNIT).is_file() else tests_from_log(logs / PYTEST_LOG)
    if record is None:
        return None
    by_file = {file: {outcome: counts.get(outcome, 0) for outcome in OUTCOMES} for file, counts in sorted(record["by_file"].items())}
    totals = {outcome: sum(counts[outcome] for counts in by_file.values()) for outcome in OUTCOMES}
    return {**record, "by_file": by_file, "totals": totals, "failures": record["failures"][:100]}


def sanitizer_record(logs: Path, checks: list[dict]) -> dict:
    """{tool: {target: {status, errors, warnings, seconds}}} from the checks named <tool>-<target>."""
    record: dict[str, dict] = {}
    for check in checks:
        if check["group"] != "sanitizer":
            continue
        tool, _, target = check["name"].partition("-")
        entry = {"status": check["status"], "seconds": check["seconds"]}
        text = (logs / check["log"]).read_text(errors="replace") if check["log"] and (logs / check["log"]).is_file() else ""
        if match := RACECHECK_SUMMARY.search(text):
            entry.update(hazards=int(match[1]), errors=int(match[2]), warnings=int(match[3]))
        elif match := ERROR_SUMMARY.search(text):
            entry.update(errors=int(match[1]))
        if check["note"]:
            entry["note"] = check["note"]
        record.setdefault(tool, {})[target] = entry
    for tool, targets in record.items():
        statuses = {entry["status"] for entry in targets.values()}
        targets["all"] = "failed" if statuses & {"failed", "timeout"} else "passed" if statuses == {"passed"} else "partial"
    return record


def write_records(logs: Path, out: Path, phase: str) -> tuple[dict, dict]:
    env_path = logs / "env.json"
    env = json.loads(env_path.read_text()) if env_path.is_file() else {"device": "unknown", "gpu": "unknown"}
    checks = read_checks(logs)
    counts = Counter(check["status"] for check in checks)
    summary = {
        "phase": phase,
        "ok": bool(checks) and all(check["status"] in ("passed", "skipped") for check in checks),
        "counts": {status: counts.get(status, 0) for status in ("passed", "failed", "timeout", "skipped")},
        "env": env,
        "checks": checks,
    }
    record = {
        "device": env.get("device"), "capability": env.get("capability"), "torch": env.get("torch"),
        "cuda": env.get("cuda"), "python": env.get("python"), "commit": env.get("commit"), "date": env.get("date"),
        "phase": phase,
        "checks": {check["name"]: check["status"] for check in checks},
        "tests": tests_record(logs),
        "sanitizer": sanitizer_record(logs, checks),
        "bench_smoke": {check["name"]: check["status"] for check in checks if check["group"] == "smoke"},
        "benchmarks": {check["name"]: check["status"] for check in checks if check["group"] == "benchmark"},
    }
    if record["tests"] is not None and any(c["name"] == "pytest-gpu" and c["status"] == "timeout" for c in checks):
        record["tests"]["complete"] = False  # stopped at the time limit: the tests after it did not run
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if env_path.is_file():  # the record names its device: none before env.json is there
        (out / f"gpu_checks_{env.get('gpu', 'unknown')}.json").write_text(json.dumps(record, indent=2) + "\n")
    return summary, record


def print_table(summary: dict, record: dict) -> None:
    env = summary["env"]
    print(f"== {env.get('device')} (sm {env.get('capability')}), torch {env.get('torch')}, commit {env.get('commit')}")
    for check in summary["checks"]:
        seconds = f"{check['seconds']:.0f}s" if check["seconds"] is not None else ""
        note = f"  ({check['note']})" if check["note"] else ""
        print(f"  {check['status']:<8} {check['name']:<28} {seconds:>6}{note}")
    tests = record["tests"]
    if tests:
        totals = ", ".join(f"{value} {key}" for key, value in tests["totals"].items() if value)
        print(f"  pytest -m gpu: {totals or 'nothing ran'}{'' if tests['complete'] else ' (incomplete)'}")
        for failure in tests["failures"][:20]:
            print(f"    FAILED {failure}")
    print(f"== {'OK' if summary['ok'] else 'NOT OK'}: " + ", ".join(f"{v} {k}" for k, v in summary["counts"].items()))


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "env":
        env = write_env(Path(argv[1]))
        print(json.dumps(env))
        return 0
    args = [arg for arg in argv if arg != "--print"]
    if len(args) >= 3 and args[0] == "write":
        summary, record = write_records(Path(args[1]), Path(args[2]), args[3] if len(args) > 3 else "")
        if "--print" in argv:
            print_table(summary, record)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
