"""Run records and resume: what a run over many images has done, and what a re-run still has to do.

A run's folder holds::

    records/<image file>.json   one record per done image, written last and atomically:
                                its presence marks the image done, so a re-run skips it
    failures.jsonl              one JSON line per image that failed:
                                {"file_name", "path", "stage", "error"}

``promptseg amg`` (both engines) and ``promptseg zeroshot proposals|instances`` keep their records
here; the Ray engine lists its failures.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, TypeVar, Union

from promptseg.io.atomic import write_bytes_atomically, write_text_atomically

PathLike = Union[str, "os.PathLike[str]"]
RECORDS = "records"
FAILURES = "failures.jsonl"
Item = TypeVar("Item")


def error_text(error: BaseException) -> str:
    """How a failure's error is written: ``"<exception type>: <message>"``."""
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class Failure:
    """One line of ``failures.jsonl``: the image, where it came from, the stage that failed and why."""

    file_name: str
    path: str
    stage: str
    error: str

    @classmethod
    def of(cls, path: PathLike, stage: str, error: BaseException) -> "Failure":
        """The failure of the image file ``path`` at ``stage`` (e.g. 'decode', 'generate') with ``error``."""
        return cls(Path(path).name, str(path), stage, error_text(error))

    def json_line(self) -> str:
        return json.dumps(asdict(self)) + "\n"


@dataclass(frozen=True)
class ResumePlan(Generic[Item]):
    """What a run does with its images (paths, names, ...: the items it was planned over).

    Attributes:
        items: every image, in order.
        todo: the images to process now.
        done: the images with a record (skipped).
        failed: the images that failed in an earlier run and are not retried.
    """

    items: tuple[Item, ...]
    todo: tuple[Item, ...]
    done: tuple[Item, ...]
    failed: tuple[Item, ...] = ()

    def line(self, where: PathLike) -> str:
        """``"N image(s): D already done in WHERE, T to do"`` (and the failures left out, if any)."""
        text = f"{len(self.items)} image(s): {len(self.done)} already done in {where}, {len(self.todo)} to do"
        return text + (f", {len(self.failed)} failed before (not retried)" if self.failed else "")


def plan_resume(
    items: Iterable[Item], is_done: Callable[[Item], bool], failed_before: Callable[[Item], bool] = lambda item: False
) -> ResumePlan[Item]:
    """Split ``items`` into done, failed before (and not done) and to do, keeping their order."""
    items = tuple(items)
    todo, done, failed = [], [], []
    for item in items:
        (done if is_done(item) else failed if failed_before(item) else todo).append(item)
    return ResumePlan(items, tuple(todo), tuple(done), tuple(failed))


def file_name(item: PathLike) -> str:
    """The key of an image's record: its file name without folders."""
    return Path(item).name


class RunRecords:
    """The records and the failure list of a run's folder (see the module).

    Args:
        folder: the run's folder (made on the first write).
    """

    def __init__(self, folder: PathLike) -> None:
        self.folder = Path(folder)
        self.records_dir = self.folder / RECORDS
        self.failures_path = self.folder / FAILURES

    # ------------------------------------------------------------------ records
    def record_path(self, name: str) -> Path:
        """``<folder>/records/<name>.json``: its presence marks the image done."""
        return self.records_dir / f"{name}.json"

    def is_done(self, name: str) -> bool:
        return self.record_path(name).is_file()

    def done_names(self) -> frozenset[str]:
        """The file names that have a record."""
        if not self.records_dir.is_dir():
            return frozenset()
        return frozenset(path.name[: -len(".json")] for path in self.records_dir.glob("*.json"))

    def read(self, name: str) -> dict[str, Any]:
        """The record of ``name``."""
        return json.loads(self.record_path(name).read_text())

    def write(self, name: str, record: Union[dict[str, Any], str]) -> None:
        """Write the record of ``name`` (a dict, or its JSON text) atomically; the image is then done."""
        text = record if isinstance(record, str) else json.dumps(record)
        write_text_atomically(self.record_path(name), text)

    def other_settings(self, settings: dict[str, Any]) -> list[str]:
        """The done images, by name, whose record holds other ``settings`` than these."""
        if not self.records_dir.is_dir():
            return []
        return sorted(
            path.name[: -len(".json")]
            for path in self.records_dir.glob("*.json")
            if json.loads(path.read_text()).get("settings") != settings
        )

    def warn_on_other_settings(self, settings: dict[str, Any]) -> None:
        """Say so on stderr when done images were made with other settings (they are kept, not redone)."""
        differing = self.other_settings(settings)
        if differing:
            print(
                f"warning: {len(differing)} done image(s) used other settings and are kept as they are "
                f"(e.g. {differing[0]}); use another --out to redo them",
                file=sys.stderr,
            )

    def plan(
        self, items: Iterable[Item], *, name: Callable[[Item], str] = file_name, retry_failed: bool = True
    ) -> ResumePlan[Item]:
        """Which images are done, which failed before (left out unless ``retry_failed``), and which to do.

        Args:
            items: the images (paths, by default).
            name: an item's file name, the key of its record and of its failure.
            retry_failed: plan the images listed in ``failures.jsonl`` again.
        """
        done = self.done_names()
        failed = set() if retry_failed else {failure.file_name for failure in self.failures()}
        return plan_resume(items, lambda item: name(item) in done, lambda item: name(item) in failed)

    # ----------------------------------------------------------------- failures
    def failures(self) -> list[Failure]:
        """The failures listed; a line a killed run left half-written is passed over (its image is retried)."""
        if not self.failures_path.is_file():
            return []
        listed = []
        for line in self.failures_path.read_text(errors="replace").splitlines():
            try:
                listed.append(Failure(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        return listed

    def start_failures(self, keep: Iterable[str] = ()) -> None:
        """Begin this run's failure list: the earlier failures of the names in ``keep`` stay, the rest go."""
        keep = set(keep)
        kept = [failure for failure in self.failures() if failure.file_name in keep]
        write_bytes_atomically(self.failures_path, "".join(failure.json_line() for failure in kept).encode())

    def add_failure(self, failure: Failure) -> None:
        """Append ``failure`` to ``failures.jsonl`` (one line, flushed)."""
        self.failures_path.parent.mkdir(parents=True, exist_ok=True)
        with self.failures_path.open("a") as handle:
            handle.write(failure.json_line())
