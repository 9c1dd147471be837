"""The driver's side of a run: writing each image's files as its row arrives, listing the
failures, and the final summary."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from promptseg.amg.outputs import orphaned_temp_folders, write_image
from promptseg.io import Failure, RunRecords, remove_orphaned_temps_in


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
        images: images in the source (for remote sources: the rows Ray Data read).
        already_done: images skipped because their record existed.
        segmented: images segmented and written by this run.
        masks: masks written by this run.
        failures: images that failed in this run (listed in ``failures.jsonl``).
        seconds: wall time of the pipeline (from its start to the last write).
        failures_path: the failures file.
        failed_before: images an earlier run listed as failed, left out and still listed.
    """

    images: int
    already_done: int
    segmented: int
    masks: int
    failures: int
    seconds: float
    failures_path: Path
    failed_before: int = 0

    @property
    def images_per_second(self) -> float:
        return self.segmented / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"amg (ray): {self.images} image(s), {self.already_done} already done, {self.segmented} segmented, "
            f"{self.masks} mask(s) in {self.seconds:.1f} s ({self.images_per_second:.2f} images/s), "
            f"{self.failures} failure(s)" + (f" listed in {self.failures_path}" if self.failures else "")
            + (f", {self.failed_before} failed before (not retried)" if self.failed_before else "")
        )


class RunWriter:
    """Consumes the pipeline's rows: writes outputs atomically and failures as JSON lines
    (:class:`promptseg.io.RunRecords`).

    ``failures.jsonl`` is started afresh by each run, keeping the failures of ``keep_failures``
    (file names an earlier run listed that this run does not retry), and temporary files a killed
    run left behind are removed.
    """

    def __init__(self, out: Path, keep_failures: Iterable[str] = ()) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        for folder in orphaned_temp_folders(self.out):
            remove_orphaned_temps_in(folder)
        self.records = RunRecords(self.out)
        self.kept_failures = list(keep_failures)
        self.records.start_failures(keep=self.kept_failures)
        self.failures_path = self.records.failures_path
        self.names: list[str] = []
        self.already_done = self.segmented = self.masks = self.failures = 0

    def consume(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.names.append(str(row["name"]))
            if row["error"]:
                failure = Failure(str(row["name"]), str(row["path"]), str(row["stage"]), str(row["error"]))
                self.records.add_failure(failure)
                self.failures += 1
            elif row["skipped"]:
                self.already_done += 1
            else:
                write_image(self.out, pickle.loads(row["outputs"]))
                self.segmented += 1
                self.masks += int(row["masks"])

    def summary(self, images: int, already_done: int, started: float) -> RunSummary:
        return RunSummary(
            images=images,
            already_done=already_done + self.already_done,
            segmented=self.segmented,
            masks=self.masks,
            failures=self.failures,
            seconds=time.perf_counter() - started,
            failures_path=self.failures_path,
            failed_before=len(self.kept_failures),
        )
