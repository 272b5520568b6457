"""`attribution doctor`: runs in progress and whether their process lives, pool slots, warehouse locks, and the
last successful run of every job; ``--fix`` settles what is safe to settle (cli/recovery.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

from cli.recovery import (
    PID_TAG,
    claims_of_finished_runs,
    command_line,
    duckdb_lock_holder,
    pool_states,
    postgres_sessions,
    recover,
    run_of_process,
    runs_in_progress,
)
from warehouse.target import Target


@dataclass
class Diagnosis:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what `--fix` clears
    notes: list[str] = field(default_factory=list)  # what needs a person


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    seconds = max(0, int(time.time() - timestamp))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m ago"
    return f"{seconds // 60}m{seconds % 60:02d}s ago"


def diagnose(instance: dg.DagsterInstance, target: Target, job_names: Sequence[str]) -> Diagnosis:
    d = Diagnosis()
    runs = runs_in_progress(instance)
    d.lines.append("runs in progress:" if runs else "runs in progress: none")
    for h in runs:
        label = {"alive": "running", "dead": "STALE", "other host": "UNKNOWN", "unknown": "UNKNOWN"}[h.state]
        d.lines.append(f"  {label:<8} {h.describe()}, {_ago(h.started_at)}: {h.why}")
        for pid in h.leftovers:
            d.lines.append(f"           leftover process {pid}: {command_line(pid)}")
        if h.state == "dead":
            d.problems.append(f"stale run {h.short_id}")
        elif h.state != "alive":
            d.notes.append(
                f"run {h.short_id} cannot be checked from here; if you know its process is gone: "
                f"attribution doctor --fix --run {h.short_id}"
            )

    pools = pool_states(instance)
    d.lines.append("pool slots:" if pools else "pool slots: no pool used yet")
    for p in pools:
        holders = ", ".join(f"run {rid[:8]} ({step})" for rid, step in p.claimed)
        waiting = f", {len(p.waiting)} step(s) waiting" if p.waiting else ""
        d.lines.append(
            f"  {p.pool}: limit {p.limit}, {len(p.claimed)} held{waiting}" + (f" by {holders}" if holders else "")
        )
    for run_id, status in claims_of_finished_runs(instance, pools).items():
        d.lines.append(f"  run {run_id[:8]} is {status.lower()} but still holds or awaits a slot")
        d.problems.append(f"slots of {status.lower()} run {run_id[:8]}")
    dead = {h.run.run_id for h in runs if h.state == "dead"}
    held_by_dead = sum(1 for p in pools for rid, _ in p.claimed if rid in dead)
    if held_by_dead:
        d.problems.append(f"{held_by_dead} slot{'s' * (held_by_dead > 1)} held by stale runs")

    try:
        _warehouse_locks(d, target)
    except Exception as exc:  # the doctor reports; it never fails because the warehouse is unreachable
        d.lines.append(f"warehouse: cannot check ({type(exc).__name__}: {str(exc).strip().splitlines()[0]})")
        d.notes.append("the warehouse cannot be reached: every run fails until it can")
    d.lines.append(f"BI reads: {_published(target)}")

    d.lines.append("last successful run per job:")
    width = max(len(j) for j in job_names)
    for job in job_names:
        records = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1)
        if not records:
            d.lines.append(f"  {job:<{width}}  never")
            continue
        r = records[0]
        took = f"took {r.end_time - r.start_time:.0f} s, " if r.end_time and r.start_time else ""
        where = f", pid {r.dagster_run.tags[PID_TAG]}" if PID_TAG in r.dagster_run.tags else ""
        d.lines.append(f"  {job:<{width}}  {_ago(r.end_time)} ({took}run {r.dagster_run.run_id[:8]}{where})")
    return d


def _published(target: Target) -> str:
    """Where BI tools read the published marts (dbt_project/macros/publish.sql), and whether they exist yet."""
    if target.is_duckdb and not target.published_duckdb_path.exists():
        return f"{target.describe_published()}, not published yet (the first successful run writes it)"
    return target.describe_published()


def _warehouse_locks(d: Diagnosis, target: Target) -> None:
    if target.is_duckdb:
        holder = duckdb_lock_holder(target.duckdb_path)
        if holder is None:
            d.lines.append(f"warehouse lock: {target.duckdb_path} is free")
            return
        pid, what = holder
        run_id = run_of_process(pid)
        owner = f", a process of run {run_id[:8]}" if run_id else ""
        d.lines.append(f"warehouse lock: {target.duckdb_path} is held by pid {pid} ({what}{owner})")
        if not run_id:
            d.notes.append(
                f"pid {pid} holds the DuckDB file: every run fails at its first step until it closes it "
                f"(BI tools open the published {target.published_duckdb_path.name} instead)"
            )
        return
    if target.is_spark:
        # Derby leaves its lock files behind when a JVM exits, so their presence says nothing about a holder.
        d.lines.append(
            f"warehouse lock: Spark metastore {target.spark.folder / 'metastore_db'} admits one process at a time"
        )
        return
    sessions = postgres_sessions(target)
    d.lines.append("database sessions at work:" if sessions else "database sessions at work: none")
    d.lines.extend(f"  {s}" for s in sessions)


def doctor(
    instance: dg.DagsterInstance,
    target: Target,
    job_names: Sequence[str],
    *,
    fix: bool,
    force_run_ids: Sequence[str] = (),
) -> tuple[list[str], int]:
    """The doctor's lines and its exit code: 0 when nothing needs fixing or a look (after ``fix``), 1 otherwise."""
    lines: list[str] = []
    if fix:
        fixed: list[str] = []
        recover(instance, force_run_ids=force_run_ids, say=fixed.append)
        lines.extend(f"fixed: {line}" for line in fixed if not line.startswith("note:"))
        if not fixed:
            lines.append("fixed: nothing needed fixing")
    d = diagnose(instance, target, job_names)
    lines.extend(d.lines)
    lines.extend(f"note: {n}" for n in d.notes)
    if d.problems:
        lines.append(f"problems: {'; '.join(d.problems)} — `attribution doctor --fix` clears them")
    elif d.notes:
        lines.append("no stale runs, no orphaned slots; the notes above need a person")
    else:
        lines.append("no stale runs, no orphaned slots")
    return lines, 1 if d.problems or d.notes else 0
