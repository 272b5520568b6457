"""dbt inside the running process (``dbtRunner``), for targets whose session cannot be shared across processes.

On the Spark target dbt must run where the SparkSession lives: the embedded Derby metastore admits one JVM, and a
JVM per dbt invocation would cost ~11 s each. dagster-dbt only knows how to start dbt as a subprocess; this resource
keeps everything dagster-dbt does around it (selection, target folders, parsing the structured log into asset events)
and replaces only the subprocess with an object that runs ``dbtRunner`` and hands back the same JSON log lines.
"""

from __future__ import annotations

import io
import os
import threading
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster_dbt import DbtCliResource
from dagster_dbt.core import dbt_cli_invocation

# One dbt invocation at a time per process: dbtRunner changes os.environ and dbt's global flags while it runs.
_INVOCATION_LOCK = threading.Lock()


@contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    previous = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(previous)


class InProcessDbt:
    """What dagster-dbt reads of a ``subprocess.Popen`` running dbt: ``args``, ``stdout`` (JSON log lines),
    ``wait``/``poll``/``returncode``. dbt runs to completion when the object is created."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str] | None = None, cwd: Any = None, **_: Any):
        from dbt.cli.main import dbtRunner
        from dbt_common.events.functions import msg_to_json

        self.args = list(args)
        self.pid = os.getpid()
        lines: list[bytes] = []

        def collect(event: Any) -> None:
            lines.append(msg_to_json(event).encode() + b"\n")

        with _INVOCATION_LOCK, _environ({**os.environ, **(env or {})}):
            previous_dir = os.getcwd()
            os.chdir(cwd or previous_dir)
            try:
                # args[0] is the dbt executable dagster-dbt would have started.
                result = dbtRunner(callbacks=[collect]).invoke(self.args[1:])
            finally:
                os.chdir(previous_dir)
        if result.exception is not None and not lines:
            lines.append(f"dbt failed: {result.exception}\n".encode())
        self.returncode = 0 if result.success else (2 if result.exception is not None else 1)
        self.stdout = io.BytesIO(b"".join(lines))

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode

    def poll(self) -> int:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """dbt has already finished when dagster-dbt could forward an interrupt."""


class InProcessDbtCliResource(DbtCliResource):
    """``DbtCliResource`` whose invocations run in this process (see the module docstring)."""

    def cli(self, args: Sequence[str], **kwargs: Any) -> Any:
        # dagster-dbt creates the process in DbtCliInvocation.run through its module's `subprocess` name: that
        # name is pointed at InProcessDbt for the duration of this call only.
        module = dbt_cli_invocation
        real = module.subprocess
        module.subprocess = types.SimpleNamespace(Popen=InProcessDbt, PIPE=real.PIPE, STDOUT=real.STDOUT)  # type: ignore[assignment]
        try:
            return super().cli(args, **kwargs)
        finally:
            module.subprocess = real
