"""A command's pass over many images: a bad image never stops it.

Each image that cannot be read or processed is listed in the run's ``failures.jsonl`` (one JSON
line ``{"file_name", "path", "stage", "error"}``, as the Ray engine lists its failures, through
:class:`promptseg.io.RunRecords`) and named on stderr; the run goes on. A re-run skips the images
listed there unless ``--retry-failed``. The exit status (:meth:`ImageRun.exit_code`): 0 when some
image succeeded (``--strict``: when none failed), else 1.

Also the checks of ``--out`` that every command makes before it writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Generic, Iterable, Optional, Sequence, TypeVar

from promptseg.io import Failure, ResumePlan, RunRecords, error_text, plan_resume

Item = TypeVar("Item")
Result = TypeVar("Result")
DECODE, GENERATE = "decode", "generate"
"""The stages a failure names: reading the image file, and segmenting it (the Ray engine's names)."""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--strict and --retry-failed."""
    group = parser.add_argument_group("bad images (listed in failures.jsonl; the run goes on)")
    group.add_argument(
        "--strict", action="store_true",
        help="exit with status 1 when any image failed (default: only when no image succeeded)",
    )
    group.add_argument(
        "--retry-failed", action="store_true",
        help="process again the images that an earlier run listed in failures.jsonl (default: skip them)",
    )


def output_folder(path: Path, option: str = "--out") -> Path:
    """``path`` when it is a folder or does not exist yet, else a ValueError (an existing file)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is an existing file; {option} names a folder (new or existing)")
    return path


def output_file(path: Path, option: str = "--out") -> Path:
    """``path`` when it is a file or does not exist yet (in a folder that is not a file), else a ValueError."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; {option} names the file to write")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{option} {path} cannot be written: {parent} is a file, not a folder")
    return path


class ImageRun(Generic[Item]):
    """The failures and successes of one command's pass over its images.

    Starting a run begins ``failures.jsonl`` afresh, keeping the earlier failures that the plan
    leaves out (``plan.failed``: not retried, so still failed).

    Args:
        command: the command's name, for the lines on stderr (e.g. ``"promptseg amg"``).
        records: the run folder's records (its ``failures.jsonl`` is written).
        plan: what the run does (:meth:`RunRecords.plan` or :func:`plan_images`).
        strict: any failure makes the exit status 1.
        name: an item's file name (default: ``Path(item).name``).
        path: an item's path or URI, as written in a failure (default: ``str(item)``).
    """

    def __init__(
        self,
        command: str,
        records: RunRecords,
        plan: ResumePlan[Item],
        *,
        strict: bool = False,
        name: Callable[[Item], str] = lambda item: Path(item).name,
        path: Callable[[Item], str] = str,
    ) -> None:
        self.command, self.records, self.plan, self.strict = command, records, plan, strict
        self._name, self._path = name, path
        records.start_failures(keep=[name(item) for item in plan.failed])
        self.succeeded = 0
        self.failed: list[Failure] = []

    def attempt(self, item: Item, stage: str, action: Callable[[], Result]) -> Optional[Result]:
        """``action()``, or None when it raised: then ``item`` is listed as failed at ``stage``."""
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - as the Ray engine: one image's failure is listed, never fatal
            self.fail(item, stage, error)
            return None

    def attempt_batch(
        self,
        items: Sequence[Item],
        inputs: Sequence[object],
        stage: str,
        batch: Callable[[list], list[Result]],
    ) -> list[Optional[Result]]:
        """``batch(inputs)`` (one result per input); when it raises, each input alone, so that only
        the images at fault are listed (each None in the returned list)."""
        if not inputs:
            return []
        try:
            return list(batch(list(inputs)))
        except Exception:  # noqa: BLE001 - retried one by one to find the image at fault
            return [self.attempt(item, stage, lambda one=one: batch([one])[0]) for item, one in zip(items, inputs)]

    def fail(self, item: Item, stage: str, error: BaseException) -> None:
        """List ``item`` as failed at ``stage`` with ``error``, and say so on stderr."""
        failure = Failure(self._name(item), self._path(item), stage, error_text(error))
        self.records.add_failure(failure)
        self.failed.append(failure)
        _say(f"{self.command}: skipped {failure.file_name} ({stage} failed): {error}")

    def succeed(self, count: int = 1) -> None:
        self.succeeded += count

    @property
    def failures(self) -> int:
        """Images failed, in this run and before (those not retried)."""
        return len(self.failed) + len(self.plan.failed)

    @property
    def successes(self) -> int:
        """Images done, in this run and before."""
        return self.succeeded + len(self.plan.done)

    def exit_code(self) -> int:
        """1 when images failed and none succeeded (or, with ``strict``, when any failed); else 0."""
        return run_exit_code(self.successes, self.failures, self.strict)

    def summary(self) -> Optional[str]:
        """``"N image(s) failed (...), listed in failures.jsonl"``, or None when none failed."""
        if not self.failures:
            return None
        parts = [f"{len(self.failed)} in this run"] if self.failed else []
        if self.plan.failed:
            parts.append(f"{len(self.plan.failed)} in an earlier run, not retried without --retry-failed")
        return f"{self.failures} image(s) failed ({', '.join(parts)}), listed in {self.records.failures_path}"

    def finish(self) -> int:
        """Print the summary (when images failed) and return :meth:`exit_code`."""
        line = self.summary()
        if line:
            print(f"{self.command}: {line}", file=sys.stderr)
        code = self.exit_code()
        if code:
            reason = "--strict and an image failed" if self.successes else "no image succeeded"
            print(f"{self.command}: exit status {code}: {reason}", file=sys.stderr)
        return code


def run_exit_code(successes: int, failures: int, strict: bool) -> int:
    """1 when ``failures`` and no success (or ``strict``), else 0."""
    return 1 if failures and (strict or not successes) else 0


def plan_images(
    records: RunRecords,
    items: Iterable[Item],
    retry_failed: bool,
    is_done: Callable[[Item], bool] = lambda item: False,
    name: Callable[[Item], str] = lambda item: Path(item).name,
) -> ResumePlan[Item]:
    """The plan of a run whose done images are told by ``is_done`` (not by records): the images
    listed in ``records``' failures are left out unless ``retry_failed``."""
    failed = set() if retry_failed else {failure.file_name for failure in records.failures()}
    return plan_resume(items, is_done, lambda item: name(item) in failed)


def _say(line: str) -> None:
    """A line on stderr that does not break a tqdm progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)
