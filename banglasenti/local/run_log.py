"""The local run's console: one line per step on the terminal, kfp's whole log in a file.

kfp's local runner prints, for every task, its executor input (dozens of lines of JSON), the step's own output and
its output artifacts. While a `RunLog` is open, standard output goes to the log file in full, and the terminal
shows each task's start and end, the steps' own progress lines (`banglasenti.runtime.process.progress`: "» ...") and
warnings; a failed task's last lines are shown in full.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TextIO, TypeVar

from banglasenti.runtime.process import PROGRESS_MARK

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([^']+)'")
ENDED = re.compile(r"Task '([^']+)' finished with status (\w+)")
PIPELINE_ENDED = re.compile(r"Pipeline '([^']+)' finished with status (\w+)")
FAILURE_TAIL = 40  # lines of a failed task's log shown on the terminal


class RunLog(io.TextIOBase):
    """A text stream for sys.stdout: every line to `log`, a summary to `terminal`."""

    def __init__(self, log: TextIO, terminal: TextIO):
        self.log = log
        self.terminal = terminal
        self.pending = ""
        self.task: str | None = None
        self.started = 0.0
        self.recent: deque[str] = deque(maxlen=FAILURE_TAIL)

    encoding = "utf-8"  # shadows io.TextIOBase's read-only property

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.summarise(ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def show(self, line: str) -> None:
        self.terminal.write(line + "\n")
        self.terminal.flush()

    def end_task(self, status: str) -> None:
        """Say how the open task ended; a failed one with its last lines."""
        if self.task is None:
            return
        seconds = time.monotonic() - self.started
        if status == "SUCCESS":
            self.show(f"{self.task}: done in {seconds:.0f} s")
        else:
            self.show(f"{self.task}: {status} after {seconds:.0f} s; its last lines:")
            for recent in self.recent:
                self.show(f"    {recent}")
        self.task = None

    def summarise(self, line: str) -> None:
        """Show what a reader of the run wants from one line of kfp's log."""
        text = line.strip()
        if started := STARTED.search(text):
            self.task, self.started = started.group(1), time.monotonic()
            self.recent.clear()
            return
        if ended := ENDED.search(text):
            self.end_task(ended.group(2))
            return
        if ended := PIPELINE_ENDED.search(text):
            self.show(f"pipeline {ended.group(1)}: {ended.group(2)}")
            return
        if self.task is not None and text:
            self.recent.append(text)
        if text.startswith(PROGRESS_MARK):
            self.show(f"{self.task or 'run'}: {text.removeprefix(PROGRESS_MARK).strip()}")
        elif text.startswith(("WARNING: ", "error: ", "gcsfuse semantics under ")):
            self.show(f"{self.task + ': ' if self.task else ''}{text}")


class quiet_run:
    """Context manager: standard output through a RunLog writing `path` (made here); yields the path."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("w", encoding="utf-8")
        self.stdout = sys.stdout
        sys.stdout = RunLog(self.file, self.stdout)
        return self.path

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        stream = sys.stdout
        if isinstance(stream, RunLog):
            if stream.pending:
                stream.write("\n")
            if exc_type is not None:
                stream.end_task("FAILURE")  # a task the runner gave up on without saying so
            stream.flush()
        sys.stdout = self.stdout
        self.file.close()


T = TypeVar("T")


def run_logged(run: Callable[[], T], root: Path, verbose: bool) -> T | None:
    """`run()` (a pipeline on the local runner) with a line per step on the terminal and kfp's whole log in a file
    under `root` (`verbose`: kfp's log on the terminal); None, after one line on stderr, where a step failed."""
    log = root / f"local-run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    if not verbose:
        print(f"kfp's whole log: {log}", flush=True)
    try:
        with contextlib.nullcontext() if verbose else quiet_run(log):
            return run()
    except RuntimeError as err:  # the local runner's "Pipeline ... finished with status FAILURE"
        print(f"error: {err}" + ("" if verbose else f" (kfp's whole log: {log})"), file=sys.stderr)
        return None
