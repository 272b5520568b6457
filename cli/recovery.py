"""Runs that recover: find runs whose process died, mark them failed and free what they held.

``attribution run`` executes its job in its own process. When that process dies without cleaning up (``kill -9``,
the out-of-memory killer, a machine restart), the Dagster instance still says the run is started and the pool
slot its step had claimed stays taken: every later run waits for that slot forever. Dagster's daemon monitors the
runs it launched itself; in-process runs are ours to watch, so each records its process in its tags
(:func:`process_tags`) and exports its run id to the processes it starts (dbt), and the next ``attribution run``,
``attribution ui`` or ``attribution doctor --fix`` settles the dead ones (:func:`recover`).

The check is safe by construction: a run is dead only when its process provably is (same host, and the machine
restarted since, or no process has that pid, or the pid now belongs to a process started later). A run on another
host, or one that recorded no process (launched from the UI), is reported and left alone unless named with
``attribution doctor --fix --run ID``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

PID_TAG = "attribution/pid"
HOST_TAG = "attribution/host"
BOOT_TAG = "attribution/boot_id"
PROCESS_START_TAG = "attribution/process_start"
# Exported by the run's process: every process it starts (dbt) inherits it, so a dead run's leftovers can be found.
RUN_ID_ENV = "ATTRIBUTION_RUN_ID"

# A run in these states claims to be executing (or about to); a finished or queued run holds no process.
IN_PROGRESS = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
_PROC = Path("/proc")


# -- processes ------------------------------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def boot_id() -> str:
    """Changes at every boot of a Linux machine ('' elsewhere): a run recorded under another boot is dead."""
    return (_read(_PROC / "sys/kernel/random/boot_id") or "").strip()


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from /proc, or None when there is no such process."""
    text = _read(_PROC / str(pid) / "stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name in parentheses may hold spaces
    return fields[0], fields[19]


def process_tags() -> dict[str, str]:
    """Tags naming the current process, recorded on every run it executes in-process."""
    pid = os.getpid()
    stat = _stat(pid)
    return {
        PID_TAG: str(pid),
        HOST_TAG: socket.gethostname(),
        BOOT_TAG: boot_id(),
        PROCESS_START_TAG: stat[1] if stat else "",
    }


def process_state(pid: int, host: str, boot: str = "", started: str = "") -> tuple[str, str]:
    """``("alive" | "dead" | "other host", why)`` for a process recorded by :func:`process_tags`."""
    if host != socket.gethostname():
        return "other host", f"its process {pid} runs on host {host}"
    if boot and boot_id() and boot != boot_id():
        return "dead", f"process {pid} ended when the machine restarted"
    if _PROC.is_dir():
        stat = _stat(pid)
        if stat is None:
            return "dead", f"process {pid} is gone"
        if stat[0] in ("Z", "X"):
            return "dead", f"process {pid} was killed (a zombie)"
        if started and stat[1] != started:
            return "dead", f"process {pid} is gone (its pid now belongs to another process)"
        return "alive", f"process {pid} is running"
    try:  # not Linux: the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead", f"process {pid} is gone"
    except PermissionError:
        pass
    return "alive", f"process {pid} is running"


def command_line(pid: int, width: int = 80) -> str:
    raw = _read(_PROC / str(pid) / "cmdline") or ""
    text = " ".join(Path(part).name if i == 0 else part for i, part in enumerate(raw.split("\0")) if part)
    return text if len(text) <= width else text[: width - 1] + "…"


def processes_of_run(run_id: str) -> list[int]:
    """Processes (of this user) started by run ``run_id``'s process, found by the run id they inherited."""
    if not _PROC.is_dir():
        return []
    marker = f"{RUN_ID_ENV}={run_id}\0".encode()
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # another user's process, or gone meanwhile
            continue
        if marker in environ + b"\0":
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return sorted(found)


def run_of_process(pid: int) -> str | None:
    """The run id a process inherited from ``attribution run``, if any."""
    try:
        environ = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    for item in environ.split(b"\0"):
        if item.startswith(f"{RUN_ID_ENV}=".encode()):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return None


def stop_processes(pids: Iterable[int], grace_seconds: float = 15.0) -> list[int]:
    """SIGTERM ``pids`` (dbt cancels its queries and exits), SIGKILL what is left after ``grace_seconds``."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if (s := _stat(p)) is not None and s[0] not in ("Z", "X")]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


# -- runs -----------------------------------------------------------------------------------------------------
@dataclass
class RunHealth:
    """A run that claims to be executing, and what is known of its process."""

    run: dg.DagsterRun
    started_at: float | None
    state: str  # alive | dead | other host | unknown
    why: str
    leftovers: list[int] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.run.run_id[:8]

    def describe(self) -> str:
        when = _clock(self.started_at) if self.started_at else "not started"
        return f"run {self.short_id} ({self.run.job_name}, started {when})"


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _engine_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid Dagster's own engine events name for a run it launched (UI, daemon): host unknown."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = getattr(event, "event_specific_data", None) if event else None
        pid = (getattr(data, "metadata", None) or {}).get("pid")
        if pid is not None:
            return int(pid.value)
    return None


def run_health(instance: dg.DagsterInstance, record: dg.RunRecord) -> RunHealth:
    run = record.dagster_run
    started = record.start_time or record.create_timestamp.timestamp()
    tags = run.tags
    if PID_TAG in tags and HOST_TAG in tags:
        state, why = process_state(
            int(tags[PID_TAG]), tags[HOST_TAG], tags.get(BOOT_TAG, ""), tags.get(PROCESS_START_TAG, "")
        )
    else:
        pid = _engine_pid(instance, run.run_id)
        state = "unknown"
        why = (
            f"launched outside `attribution run` (process {pid}, host not recorded)"
            if pid
            else "launched outside `attribution run` (no process recorded)"
        )
    health = RunHealth(run, started, state, why)
    if state == "dead":
        health.leftovers = processes_of_run(run.run_id)
    return health


def runs_in_progress(instance: dg.DagsterInstance) -> list[RunHealth]:
    """Runs that claim to execute; NOT_STARTED runs count only when ``attribution run`` created them."""
    records = instance.get_run_records(dg.RunsFilter(statuses=[*IN_PROGRESS, dg.DagsterRunStatus.NOT_STARTED]))
    return [
        run_health(instance, r)
        for r in records
        if r.dagster_run.status != dg.DagsterRunStatus.NOT_STARTED or PID_TAG in r.dagster_run.tags
    ]


# -- pool slots -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolState:
    pool: str
    limit: int | None
    claimed: list[tuple[str, str]]  # (run_id, step_key) holding a slot
    waiting: list[tuple[str, str]]  # (run_id, step_key) queued for a slot


def pool_states(instance: dg.DagsterInstance) -> list[PoolState]:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    infos = storage.get_concurrency_infos(sorted(storage.get_concurrency_keys()))
    states = []
    for key, info in infos.items():
        claimed = [(s.run_id, s.step_key) for s in info.claimed_slots]
        held = set(claimed)
        waiting = [(p.run_id, p.step_key) for p in info.pending_steps if (p.run_id, p.step_key) not in held]
        states.append(PoolState(key, info.limit, claimed, waiting))
    return states


def claims_of_finished_runs(instance: dg.DagsterInstance, pools: Sequence[PoolState]) -> dict[str, str]:
    """Run ids holding or awaiting a slot although their run is over (or gone): {run_id: its status}."""
    run_ids = {run_id for p in pools for run_id, _ in [*p.claimed, *p.waiting]}
    if not run_ids:
        return {}
    runs = {r.run_id: r for r in instance.get_runs(dg.RunsFilter(run_ids=sorted(run_ids)))}
    return {
        run_id: (runs[run_id].status.value if run_id in runs else "deleted")
        for run_id in sorted(run_ids)
        if run_id not in runs or runs[run_id].status in FINISHED
    }


def _slots_held(pools: Sequence[PoolState], run_id: str) -> list[str]:
    return [p.pool for p in pools for rid, _ in p.claimed if rid == run_id]


# -- recovery -------------------------------------------------------------------------------------------------
def settle_dead_run(instance: dg.DagsterInstance, health: RunHealth, pools: Sequence[PoolState]) -> str:
    """Mark a dead run failed, free its pool slots and queue places, stop its leftover processes; one line."""
    held = _slots_held(pools, health.run.run_id)
    message = f"{health.why}: marked failed by `attribution` at its next start (the run cannot finish)"
    instance.report_run_failed(health.run, message=message)
    instance.event_log_storage.free_concurrency_slots_for_run(health.run.run_id)
    done = ["marked failed"]
    if held:
        done.append(f"freed {len(held)} slot{'s' * (len(held) > 1)} of pool {', '.join(sorted(set(held)))}")
    if health.leftovers:
        names = ", ".join(f"{command_line(p, 24) or '?'} pid {p}" for p in health.leftovers)
        stop_processes(health.leftovers)
        done.append(f"stopped its leftover process{'es' * (len(health.leftovers) > 1)} ({names})")
    return f"recovered {health.describe()}: {health.why} — {', '.join(done)}"


def recover(
    instance: dg.DagsterInstance, *, force_run_ids: Sequence[str] = (), say: Callable[[str], None] = print
) -> int:
    """Settle every dead run and every claim left by a finished run; say one line for each. Returns how many.

    ``force_run_ids`` names runs the operator knows are dead (another host, or launched from the UI); a run whose
    process is alive on this host is never touched.
    """
    fixed = 0
    pools = pool_states(instance)
    for health in runs_in_progress(instance):
        forced = any(health.run.run_id.startswith(r) for r in force_run_ids)
        if health.state == "dead" or (forced and health.state != "alive"):
            if forced and health.state != "dead":
                health.why = f"named by --run; {health.why}"
            say(settle_dead_run(instance, health, pools))
            fixed += 1
        elif health.state in ("other host", "unknown"):
            say(f"note: {health.describe()} is still marked started; {health.why}: not touched (attribution doctor)")
    for run_id, status in claims_of_finished_runs(instance, pool_states(instance)).items():
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        say(f"freed the pool slots still held by run {run_id[:8]}, which is {status.lower()}")
        fixed += 1
    return fixed


def settle_own_run(instance: dg.DagsterInstance, run_id: str, why: str) -> None:
    """After a run's own process stops it (finished, failed, interrupted): nothing of it may stay claimed."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status not in FINISHED and run.status != dg.DagsterRunStatus.QUEUED:
        instance.report_run_failed(run, message=why)
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def describe_wait(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """What run ``run_id`` waits for, when one of its steps is queued for a pool slot: one line."""
    for pool in pool_states(instance):
        if not any(rid == run_id for rid, _ in pool.waiting) or any(rid == run_id for rid, _ in pool.claimed):
            continue
        holders = []
        for rid, step in pool.claimed:
            run = instance.get_run_by_id(rid)
            tags = run.tags if run else {}
            who = f"run {rid[:8]}" + (f" ({run.job_name}" if run else " (")
            who += f", pid {tags[PID_TAG]}" if PID_TAG in tags else ""
            holders.append(f"{who}, step {step})")
        held_by = "; ".join(holders) if holders else "runs queued before this one"
        return (
            f"  waiting for a slot of pool {pool.pool} (limit {pool.limit}), held by {held_by} — "
            "Ctrl-C gives up (`attribution doctor` shows every run and slot)"
        )
    return None


# -- warehouse locks ------------------------------------------------------------------------------------------
_DUCKDB_LOCK = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")


def duckdb_lock_holder(path: Path) -> tuple[int, str] | None:
    """(pid, what it is) of a process holding DuckDB file ``path`` for writing, or None when it is free."""
    import duckdb

    if not path.exists():
        return None
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as exc:
        match = _DUCKDB_LOCK.search(str(exc))
        if not match:
            raise
        pid = int(match["pid"])
        return pid, command_line(pid) or match["exe"]
    return None


def postgres_sessions(target: object) -> list[str]:
    """Other sessions busy on the warehouse database (they may hold locks a run waits for)."""
    from warehouse.client import Warehouse

    wh = Warehouse(target)  # type: ignore[arg-type]
    sql = (
        "select pid, coalesce(nullif(application_name, ''), '?') as app, state, "
        "extract(epoch from now() - coalesce(xact_start, query_start))::int as seconds, "
        "left(regexp_replace(query, '\\s+', ' ', 'g'), 60) as query "
        "from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() "
        "and state is not null and state <> 'idle' order by pid"
    )
    with wh.connect() as conn:
        frame = wh.query_df(sql, conn)
    return [f"pid {r.pid} {r.app} {r.state} for {r.seconds} s: {r.query}" for r in frame.itertuples()]
