"""A quiet terminal for long commands: one line per step with its elapsed time, everything else in a log file.

Dagster's event log and dbt's own output (dagster-dbt writes it to stdout) go to the log file through the process's
file descriptors, so the steps of a multiprocess run (PostgreSQL) are captured as well as in-process ones. The step
lines come from the run's event log in the Dagster instance, which every executor writes to.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TextIO

import dagster as dg

_STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}


def new_log_path(folder: Path, command: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{command}-{datetime.now().strftime('%Y%m%dT%H%M%S')}.log"


@contextmanager
def output_to_log(log_path: Path) -> Iterator[TextIO]:
    """Send this process's (and its children's) stdout and stderr to ``log_path``; yield the original stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(saved_out), "w", buffering=1)
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            console.close()


def step_line(step_key: str, status: str, seconds: float | None) -> str:
    elapsed = f"{seconds:7.1f} s" if seconds is not None else ""
    return f"  {status:<6} {step_key:<52} {elapsed}".rstrip()


class StepProgress(threading.Thread):
    """Prints a line when a step of ``run_id`` finishes (and, on a terminal, which step is running)."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, out: TextIO, poll_seconds: float = 0.5):
        super().__init__(daemon=True)
        self.instance, self.run_id, self.out, self.poll_seconds = instance, run_id, out, poll_seconds
        self.interactive = out.isatty()
        self._cursor: str | None = None
        self._step_started: dict[str, float] = {}
        self._done = threading.Event()
        self._pending_status = False
        self._running: set[str] = set()
        self._polls = 0
        self._waiting_line: str | None = None

    def run(self) -> None:
        while not self._done.wait(self.poll_seconds):
            self._drain()
            self._polls += 1
            if not self._running and self._polls % 4 == 0:
                self._show_wait()
        self._drain()

    def _show_wait(self) -> None:
        """Between steps, say once what the run waits for when a step is queued for a pool slot."""
        from cli.recovery import describe_wait

        try:
            line = describe_wait(self.instance, self.run_id)
        except Exception:  # the instance is busy or not set up yet: say it at the next poll
            return
        if line and line != self._waiting_line:
            prefix = "\r\033[K" if self._pending_status else ""
            self.out.write(prefix + line + "\n")
            self._pending_status = False
        self._waiting_line = line

    def stop(self) -> None:
        self._done.set()
        self.join()
        if self._pending_status:
            self.out.write("\r\033[K")

    def _drain(self) -> None:
        while True:
            try:
                page = self.instance.get_records_for_run(self.run_id, cursor=self._cursor, of_type=_STEP_EVENTS)
            except Exception:  # the run's storage may not exist before its first event
                return
            for record in page.records:
                self._show(record.event_log_entry)
            self._cursor = page.cursor
            if not page.has_more:
                return

    def _show(self, entry: dg.EventLogEntry) -> None:
        event = entry.dagster_event
        if event is None or event.step_key is None:
            return
        if event.event_type == dg.DagsterEventType.STEP_START:
            self._step_started[event.step_key] = entry.timestamp
            self._running.add(event.step_key)
            if self.interactive:
                self.out.write(f"\r\033[K  ...    {event.step_key}")
                self._pending_status = True
            return
        self._running.discard(event.step_key)
        started = self._step_started.get(event.step_key)
        seconds = entry.timestamp - started if started is not None else None
        status = "ok" if event.event_type == dg.DagsterEventType.STEP_SUCCESS else "FAILED"
        prefix = "\r\033[K" if self.interactive else ""
        self.out.write(prefix + step_line(event.step_key, status, seconds) + "\n")
        self._pending_status = False
