"""dbt inside the running process (``dbtRunner``), on every target, over a manifest parsed once per process.

A dbt subprocess pays its fixed costs on every invocation: importing dbt and its adapter (~2.5 s) and parsing the
project (~1.5 s partial, ~6 s full, and always full when the partial-parse state was written for another profile,
e.g. another warehouse path). A run has six invocations, so a small warehouse spent most of its run there. In this
process dbt is imported once and the project parsed once per profile (`parsed_manifest`); each invocation then only
runs. On the Spark target dbt must run here anyway: the embedded Derby metastore admits one JVM, and a JVM per dbt
invocation would cost ~11 s each.

dagster-dbt only knows how to start dbt as a subprocess; this resource keeps everything dagster-dbt does around it
(selection, target folders, parsing the structured log into asset events) and replaces only the subprocess with an
object that runs ``dbtRunner`` and hands back the same JSON log lines.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource
from dagster_dbt.core import dbt_cli_invocation
from packaging.version import Version

# One dbt invocation at a time per process: dbtRunner changes os.environ and dbt's global flags while it runs.
_INVOCATION_LOCK = threading.Lock()
# The latest parsed manifest and its profile fingerprint (see _fingerprint). One is enough: a process moves between
# warehouses (tests, the CLI's commands) but runs against one at a time.
_PARSED: tuple[str, Any] | None = None
# What a parse reads from the environment: the profile and the project's env_var() calls. The run's id and the
# per-invocation folders change every run without changing what dbt parses.
_PARSE_ENV_PREFIXES = ("ATTRIBUTION_", "PG", "DBT_")
_PER_INVOCATION_ENV = {"DBT_TARGET_PATH", "DBT_LOG_PATH", "ATTRIBUTION_RUN_ID", "DBT_INDIRECT_SELECTION"}
# The person `attribution forget` erases (cli/privacy.py): read by the operation only, never by a parse, and kept
# out of the fingerprint so that an erasure reuses the parsed manifest rather than parsing under a key derived from
# the person's identifiers.
_PER_INVOCATION_ENV_PREFIXES = ("ATTRIBUTION_FORGET_",)
# Sources whose change invalidates a parsed manifest.
_DBT_SOURCE_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".md"}


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


def newest_source_mtime(project_dir: Path) -> float:
    """The newest modification time of any file dbt parses (the dbt folder and dbt_project.yml)."""
    newest = (project_dir / "dbt_project.yml").stat().st_mtime
    for p in (project_dir / "dbt_project").rglob("*"):
        if p.suffix in _DBT_SOURCE_SUFFIXES and p.is_file():
            newest = max(newest, p.stat().st_mtime)
    return newest


def _option(args: Sequence[str], name: str) -> str | None:
    return next((args[i + 1] for i, a in enumerate(args[:-1]) if a == name), None)


def _fingerprint(args: Sequence[str], env: Mapping[str, str], project_dir: Path) -> str:
    parse_env = sorted(
        (k, v)
        for k, v in env.items()
        if k.startswith(_PARSE_ENV_PREFIXES)
        and k not in _PER_INVOCATION_ENV
        and not k.startswith(_PER_INVOCATION_ENV_PREFIXES)
    )
    text = repr((_option(args, "--target"), _option(args, "--profile"), parse_env, newest_source_mtime(project_dir)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parsed_manifest(args: Sequence[str], env: Mapping[str, str], project_dir: Path) -> Any | None:
    """The project parsed for this profile and environment, once per process. The parse keeps its partial-parse
    state in a folder of its own per fingerprint, so the next process re-parses only what changed. Runs with the
    invocation lock held and ``env`` applied."""
    global _PARSED
    key = _fingerprint(args, env, project_dir)
    if _PARSED is None or _PARSED[0] != key:
        from dbt.cli.main import dbtRunner

        target = _option(args, "--target") or "default"
        parse_args = ["parse", "--quiet", "--target-path", str(project_dir / "target" / target / f"parse-{key}")]
        if (profile := _option(args, "--profile")) is not None:
            parse_args += ["--profile", profile]
        result = dbtRunner().invoke([*parse_args, "--target", target])
        if not result.success:
            return None  # the invocation parses for itself and reports the error in its own log
        _PARSED = (key, result.result)
    return _PARSED[1]


def _release_duckdb() -> None:
    """Close dbt-duckdb's database between invocations. A dbt process released the file when it exited; here the
    database would stay open with this process, and a DuckDB file held open by one process cannot be opened by any
    other (MetricFlow, a loader, the next run's process)."""
    connections = sys.modules.get("dbt.adapters.duckdb.connections")
    if connections is None:
        return
    manager = connections.DuckDBConnectionManager
    with manager._LOCK:
        if manager._ENV is not None:
            manager._ENV.close()
            manager._ENV = None


# Commands that build their own manifest or need none: the rest run over the process's parsed one.
_OWN_MANIFEST = {"parse", "deps", "debug", "clean", "init", "--version"}
# Commands whose run_results.json is written here, without dbt's copy of the unchanged manifest (~0.7 s each).
_RESULTS_ONLY = {"build", "run", "test", "seed", "snapshot"}


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
            # What a dbt subprocess prints at its default level: dagster-dbt echoes every line to the step's log.
            if event.info.level != "debug":
                lines.append(msg_to_json(event).encode() + b"\n")

        # dbt's own console logger would write this process's stdout; dagster-dbt reads the events collected here.
        with _INVOCATION_LOCK, _environ({**os.environ, **(env or {}), "DBT_LOG_LEVEL": "none"}):
            previous_dir = os.getcwd()
            os.chdir(cwd or previous_dir)
            try:
                # args[0] is the dbt executable dagster-dbt would have started.
                command = next((a for a in self.args[1:] if not a.startswith("-")), "")
                manifest = None if command in _OWN_MANIFEST else parsed_manifest(self.args, os.environ, Path.cwd())
                dbt_args = self.args[1:]
                if command in _RESULTS_ONLY:
                    dbt_args = [*dbt_args, "--no-write-json"]
                result = dbtRunner(manifest=manifest, callbacks=[collect]).invoke(dbt_args)
                if command in _RESULTS_ONLY and hasattr(result.result, "write") and "DBT_TARGET_PATH" in os.environ:
                    result.result.write(str(Path(os.environ["DBT_TARGET_PATH"]) / "run_results.json"))
            finally:
                os.chdir(previous_dir)
                _release_duckdb()
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

    @cached_property
    def _cli_version(self) -> Version:
        """The dbt this process imports (dagster-dbt would start `dbt --version`, ~2.5 s per resource)."""
        from dbt.version import __version__

        return Version(__version__)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        """No adapter handle: dagster-dbt builds one per invocation (parsing every macro, ~2 s) only for its
        row-count and column-metadata queries, which this project does not use (orchestration/dbt.py counts rows
        through the warehouse client)."""
        return None

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
