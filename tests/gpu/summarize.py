"""The records of a tests/gpu/session.sh run: what each check did, in JSON.

    python tests/gpu/summarize.py env LOGS             # LOGS/env.json: device, torch, toolchain, commit (imports torch)
    python tests/gpu/summarize.py stamp FILE           # matches | stale | unstamped | missing: FILE's build stamp
    python tests/gpu/summarize.py sanitizer            # the path of compute-sanitizer (exit 1: not found)
    python tests/gpu/summarize.py write LOGS OUT [STEPS] [--print]   # OUT/gpu_checks_<gpu>.json, OUT/session_log.txt
    python tests/gpu/summarize.py merge FIRST SECOND OUT           # one record from a run and its rerun

``write`` reads only files (no torch): LOGS/env.json, LOGS/checks.tsv (one line per check that
session.sh ran: name, group, status, exit code, seconds, log file, note), LOGS/results.tsv (the
benchmark result files and whether each came back as a file), the pytest JUnit XML (or, when pytest
was stopped before writing it, its ``-v`` log) and the compute-sanitizer logs. It is run after every
check, so the records are current even when a later check is killed.

``gpu_checks_<gpu>.json`` is the record to commit to benchmarks/results/: device, torch, commit, the
toolchain, every check's status, seconds and note, passed/failed/skipped counts per test file, and per
sanitizer tool. ``session_log.txt`` holds the start and the end of every check's log.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTEST_JUNIT = "pytest_gpu.xml"
PYTEST_LOG = "tests.log"  # the log of the check named tests
RECORD_LOG = "session_log.txt"
LOG_HEAD_LINES, LOG_TAIL_LINES, TESTS_TAIL_LINES, LINE_CHARS = 40, 200, 600, 2000
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
VERBOSE_LINE = re.compile(r"^(?P<file>[^\s:]*\.py)?::(?P<test>.+?) (?P<outcome>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
VERBOSE_OUTCOME = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "SKIPPED": "skipped",
                   "XFAIL": "xfailed", "XPASS": "xpassed"}
ERROR_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors?")
STEP_OF_CHECK = {"info": "build", "wheels": None}  # checks that session.sh runs as part of a step, or always
UNSUPPORTED_DEVICE = "Device not supported"  # compute-sanitizer under gVisor (the device library's KINDS.md)
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


def _version_of(command: list[str], pattern: str = "") -> str | None:
    """The first line of ``command``'s output that matches ``pattern`` (regex), or None when it does not run."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    matching = [line for line in lines if re.search(pattern, line)] if pattern else lines
    return matching[0] if matching else None


def _tool(path: str | None, version_args: list[str], pattern: str = "") -> dict:
    """{path, version} of an executable (path None when it was not found)."""
    if not path:
        return {"path": None, "version": None}
    return {"path": path, "version": _version_of([path, *version_args], pattern)}


def find_nvcc() -> str | None:
    """nvcc as setup.py's build finds it: $CUDA_HOME/bin, /usr/local/cuda/bin, then PATH."""
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [Path(cuda_home) / "bin" / "nvcc"] if cuda_home else []
    candidates += [Path("/usr/local/cuda/bin/nvcc"), Path(shutil.which("nvcc") or "/nonexistent")]
    return next((str(path) for path in candidates if path.is_file()), None)


def find_compute_sanitizer() -> str | None:
    """compute-sanitizer: $COMPUTE_SANITIZER, PATH, beside nvcc (its bin/ and the toolkit's
    compute-sanitizer/), under $CUDA_HOME, /usr/local/cuda and /usr/local/cuda-*."""
    if os.environ.get("COMPUTE_SANITIZER"):
        return os.environ["COMPUTE_SANITIZER"]
    if found := shutil.which("compute-sanitizer"):
        return found
    homes = []
    if nvcc := find_nvcc():
        homes += [Path(nvcc).parent.parent, Path(nvcc).resolve().parent.parent]
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            homes.append(Path(os.environ[variable]))
    homes += [Path("/usr/local/cuda"), *sorted(Path("/usr/local").glob("cuda-*"), reverse=True)]
    for home in homes:
        for path in (home / "bin" / "compute-sanitizer", home / "compute-sanitizer" / "compute-sanitizer"):
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return None


def _package(name: str) -> dict:
    """{version, path} of an installed Python package, without importing it."""
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = None
    spec = importlib.util.find_spec(name)
    return {"version": version, "path": str(Path(spec.origin).parent) if spec and spec.origin else None}


def build_stamp_module():
    """promptseg/ops/build_stamp.py, loaded by path (promptseg's package imports torch)."""
    spec = importlib.util.spec_from_file_location("_promptseg_build_stamp", ROOT / "promptseg" / "ops" / "build_stamp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toolchain() -> dict:
    """What building and checking the extension uses: versions and paths."""
    include = sysconfig.get_paths()["include"]
    cxx = os.environ.get("CXX", "c++")
    return {
        "setuptools": _package("setuptools"),
        "nvcc": _tool(find_nvcc(), ["--version"], r"release"),
        "gcc": _tool(shutil.which("gcc"), ["-dumpfullversion"]),
        "cxx": _tool(shutil.which(cxx), ["--version"]),
        "python_headers": {"path": include, "python_h": (Path(include) / "Python.h").is_file(),
                           "version": sysconfig.get_python_version()},
        "ninja": _tool(shutil.which("ninja"), ["--version"]),
        "compute_sanitizer": _tool(find_compute_sanitizer(), ["--version"], r"[Vv]ersion"),
    }


def write_env(logs: Path) -> dict:
    env = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
           "commit": commit_of(ROOT), "host": platform.node(), "source_stamp": build_stamp_module().source_stamp(ROOT)}
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
    env["toolchain"] = toolchain()
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "env.json").write_text(json.dumps(env, indent=2) + "\n")
    return env


def stamp_state(library: Path) -> str:
    """``matches``, ``stale``, ``unstamped`` or ``missing``: how ``library``'s build stamp compares with
    the sources of this checkout (read from the file's bytes: it need not load)."""
    if not library.is_file():
        return "missing"
    module = build_stamp_module()
    return module.build_stamp_status(module.file_stamp(library), ROOT)


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
    """{tool: {status, seconds, errors (and hazards, warnings for racecheck), note}} from the sanitizer checks."""
    record: dict[str, dict] = {}
    for check in checks:
        if check["group"] != "sanitizer":
            continue
        entry = {"status": check["status"], "seconds": check["seconds"]}
        text = (logs / check["log"]).read_text(errors="replace") if check["log"] and (logs / check["log"]).is_file() else ""
        if match := RACECHECK_SUMMARY.search(text):
            entry.update(hazards=int(match[1]), errors=int(match[2]), warnings=int(match[3]))
        elif match := ERROR_SUMMARY.search(text):
            entry.update(errors=int(match[1]))
        if check["note"]:
            entry["note"] = check["note"]
        if UNSUPPORTED_DEVICE in text:
            entry["runtime"] = "compute-sanitizer refused the device (seen on gVisor machines): no finding about the kernels"
        record[check["name"]] = entry
    return record


def read_results(logs: Path) -> dict[str, dict]:
    """{check name: {file, returned_as}} from LOGS/results.tsv: ``file`` in OUT, or ``log`` (session_log.txt)."""
    path = logs / "results.tsv"
    results = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        fields = line.split("\t")
        if len(fields) == 3:
            results[fields[0]] = {"file": fields[1], "returned_as": "file" if fields[2] == "file" else RECORD_LOG}
    return results


def short_of_time(checks: list[dict]) -> list[str]:
    """The steps of session.sh (for a rerun) whose checks were skipped because the budget had no time left."""
    steps = []
    for check in checks:
        if check["status"] == "skipped" and "no time left" in (check["note"] or ""):
            step = STEP_OF_CHECK.get(check["name"], check["name"])
            if step is not None and step not in steps:
                steps.append(step)
    return steps


def build_record(logs: Path, steps: str) -> dict:
    """The record of a run: environment, every check, tests per file, sanitizers, benchmarks."""
    env_path = logs / "env.json"
    env = json.loads(env_path.read_text()) if env_path.is_file() else {"device": "unknown", "gpu": "unknown"}
    checks = read_checks(logs)
    results = read_results(logs)
    counts = Counter(check["status"] for check in checks)
    record = {
        "device": env.get("device"), "capability": env.get("capability"), "torch": env.get("torch"),
        "cuda": env.get("cuda"), "python": env.get("python"), "commit": env.get("commit"), "date": env.get("date"),
        "steps": steps,
        "ok": bool(checks) and all(check["status"] in ("passed", "skipped") for check in checks),
        "counts": {status: counts.get(status, 0) for status in ("passed", "failed", "timeout", "skipped")},
        "short_of_time": short_of_time(checks),
        "checks": checks,
        "tests": tests_record(logs),
        "sanitizer": sanitizer_record(logs, checks),
        "benchmarks": {check["name"]: {"status": check["status"], **results.get(check["name"], {})}
                       for check in checks if check["group"] == "benchmark"},
        "env": env,
    }
    if record["tests"] is not None and any(c["name"] == "tests" and c["status"] == "timeout" for c in checks):
        record["tests"]["complete"] = False  # stopped at the time limit: the tests after it did not run
    return record


def log_excerpt(path: Path, tail: int) -> list[str]:
    """The first LOG_HEAD_LINES and the last ``tail`` lines of a log, each cut to LINE_CHARS."""
    lines = [line[:LINE_CHARS] for line in path.read_text(errors="replace").splitlines()]
    if len(lines) > LOG_HEAD_LINES + tail:
        lines = [*lines[:LOG_HEAD_LINES], f"[... {len(lines) - LOG_HEAD_LINES - tail} lines left out ...]", *lines[-tail:]]
    return lines


def session_log(logs: Path, checks: list[dict]) -> str:
    """Every check's status line and the start and end of its log, in the order they ran."""
    parts = []
    for check in checks:
        seconds = f", {check['seconds']:.0f} s" if check["seconds"] is not None else ""
        parts.append(f"==== {check['name']}: {check['status']} (exit {check['rc']}{seconds})"
                     + (f": {check['note']}" if check["note"] else ""))
        if check["log"] and (logs / check["log"]).is_file():
            parts.extend(log_excerpt(logs / check["log"], TESTS_TAIL_LINES if check["group"] == "tests" else LOG_TAIL_LINES))
    return "\n".join(parts) + "\n"


def _write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (a command killed meanwhile leaves the old file)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def record_name(record: dict) -> str:
    return f"gpu_checks_{record['env'].get('gpu', 'unknown')}.json"


def write_records(logs: Path, out: Path, steps: str) -> dict:
    """OUT/gpu_checks_<gpu>.json and OUT/session_log.txt from LOGS; returns the record."""
    record = build_record(logs, steps)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / record_name(record), json.dumps(record, indent=2) + "\n")
    _write(out / RECORD_LOG, session_log(logs, record["checks"]))
    return record


def merge_records(first: dict, second: dict) -> dict:
    """One record from a run and its rerun on the same device: each check as the later run that did not
    skip it has it; tests, sanitizer tools and benchmarks likewise."""
    def ran(check: dict) -> bool:
        return check["status"] != "skipped"

    checks = {check["name"]: check for check in first["checks"]}
    for check in second["checks"]:
        if ran(check) or check["name"] not in checks:
            checks[check["name"]] = check
    merged = {**first, "checks": list(checks.values()), "env": second["env"], "merged_from": [
        {key: record.get(key) for key in ("date", "commit", "steps")} for record in (first, second)]}
    if any(check["name"] == "tests" and ran(check) for check in second["checks"]):
        merged["tests"] = second["tests"]
    for key in ("sanitizer", "benchmarks"):
        merged[key] = {**first[key], **{name: entry for name, entry in second[key].items() if entry["status"] != "skipped"}}
    counts = Counter(check["status"] for check in merged["checks"])
    merged["counts"] = {status: counts.get(status, 0) for status in ("passed", "failed", "timeout", "skipped")}
    merged["ok"] = all(check["status"] in ("passed", "skipped") for check in merged["checks"])
    merged["short_of_time"] = short_of_time(merged["checks"])
    return merged


def print_table(record: dict) -> None:
    env = record["env"]
    print(f"== {env.get('device')} (sm {env.get('capability')}), torch {env.get('torch')}, commit {env.get('commit')}")
    for check in record["checks"]:
        seconds = f"{check['seconds']:.0f}s" if check["seconds"] is not None else ""
        note = f"  ({check['note']})" if check["note"] else ""
        print(f"  {check['status']:<8} {check['name']:<20} {seconds:>6}{note}")
    tests = record["tests"]
    if tests:
        totals = ", ".join(f"{value} {key}" for key, value in tests["totals"].items() if value)
        print(f"  pytest -m gpu: {totals or 'nothing ran'}{'' if tests['complete'] else ' (incomplete)'}")
        for failure in tests["failures"][:20]:
            print(f"    FAILED {failure}")
    if record["short_of_time"]:
        print(f"== no time left for: {' '.join(record['short_of_time'])}; "
              f"rerun them with: bash tests/gpu/session.sh {' '.join(record['short_of_time'])}")
    print(f"== {'OK' if record['ok'] else 'NOT OK'}: " + ", ".join(f"{v} {k}" for k, v in record["counts"].items()))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "env":
        print(json.dumps(write_env(Path(argv[1]))))
        return 0
    if argv == ["sanitizer"]:
        path = find_compute_sanitizer()
        print(path or "compute-sanitizer not found", file=sys.stdout if path else sys.stderr)
        return 0 if path else 1
    if len(argv) == 2 and argv[0] == "stamp":
        state = stamp_state(Path(argv[1]))
        print(state)
        return 0 if state == "matches" else 1
    if len(argv) == 4 and argv[0] == "merge":
        merged = merge_records(*(json.loads(Path(path).read_text()) for path in argv[1:3]))
        Path(argv[3]).write_text(json.dumps(merged, indent=2) + "\n")
        return 0
    args = [arg for arg in argv if arg != "--print"]
    if 3 <= len(args) <= 4 and args[0] == "write":
        record = write_records(Path(args[1]), Path(args[2]), args[3] if len(args) > 3 else "")
        if "--print" in argv:
            print_table(record)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
