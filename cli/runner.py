"""Run Dagster jobs in-process from the CLI, on a persistent instance so the UI shows CLI runs too."""

from __future__ import annotations

import importlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from cli.recovery import RUN_ID_ENV, process_tags, settle_own_run
from orchestration.schedules import coverage_tags
from warehouse.client import Warehouse
from warehouse.loader import newest_load
from warehouse.privacy import ensure_warehouse_salt
from warehouse.target import DATA_DIR, Target, export_target


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or DATA_DIR / "dagster_home")


DAGSTER_YAML = """\
# Written by `attribution`; see README "Dagster UI".
telemetry:
  enabled: false
# Dagster's SQLite storage, committing without an fsync per event (orchestration/instance_storage.py says why).
storage:
  custom:
    module: orchestration.instance_storage
    class: LocalSqliteStorage
    config:
      base_dir: {home}
concurrency:
  runs:
    # DuckDB has a single writer: queued runs execute one at a time. PostgreSQL runs may overlap.
    max_concurrent_runs: {max_runs}
  pools:
    default_limit: {pool_limit}
"""


def prepare_dagster_home(target: Target, home: Path | None = None) -> Path:
    home = home or dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    # DuckDB's file and Spark's embedded metastore each admit one process at a time.
    limit = 1 if target.is_duckdb or target.is_spark else 4
    yaml = DAGSTER_YAML.format(home=json.dumps(str(home)), max_runs=limit, pool_limit=limit)
    (home / "dagster.yaml").write_text(yaml)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def project_instance(target: Target, home: Path | None = None) -> dg.DagsterInstance:
    """The instance `attribution` runs on (the storage its dagster.yaml names), under ``home``."""
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(target, home)))


def load_definitions(target: Target) -> dg.Definitions:
    """Import (or re-import) the code location after the target has been exported to the environment."""
    export_target(target)
    module = importlib.import_module("orchestration.definitions")
    if getattr(module, "target", None) != target:
        module = importlib.reload(module)
    return module.defs


CONVERSION_DAYS_VIEW = ("staging", "stg_raw__conversion_days")


def data_partition_range(target: Target, job: dg.JobDefinition) -> dict[str, str]:
    """Range tags covering every day that holds a conversion staging accepts.

    Partitions outside the data would only add empty materialisations to the run. The days come from the dbt view
    ``staging.stg_raw__conversion_days``, which applies staging's own event-time rule, so one row dated 2026-02-30
    or 2099 (rejected at staging) cannot stretch a run over every partition.
    """
    partitions = job.partitions_def
    if partitions is None:
        return {}
    keys = partitions.get_partition_keys()
    if not keys:
        return {}
    first, last = keys[0], keys[-1]
    bounds = _conversion_days(target)
    if bounds is not None:
        first, last = max(first, min(bounds[0], last)), min(last, max(bounds[1], first))
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _conversion_days(target: Target) -> tuple[str, str] | None:
    wh = Warehouse(target)
    schema, view = CONVERSION_DAYS_VIEW
    with wh.connect() as conn:
        if not wh.table_exists("raw", "conversions", conn):
            return None
        missing = not wh.table_exists(schema, view, conn)
    if missing:
        # Before the first run (or after raw was restored with cascade) the view does not exist yet: dbt creates
        # it, a second or two, so the first run covers the data's days rather than every partition.
        _create_conversion_days_view(target)
    with wh.connect() as conn:
        frame = wh.query_df(
            f"select min(converted_date) as first_day, max(converted_date) as last_day from {schema}.{view}", conn
        )
    first, last = frame["first_day"].iloc[0], frame["last_day"].iloc[0]
    if first is None or last is None or first != first:  # no accepted conversion (NaT/NaN compare unequal)
        return None
    return str(first)[:10], str(last)[:10]


def _create_conversion_days_view(target: Target) -> None:
    from orchestration.dbt import ensure_manifest, make_dbt_project
    from orchestration.resources import dbt_cli

    project = make_dbt_project(target.name)
    ensure_manifest(project)
    base = Path(project.project_dir) / project.target_path
    target_path = base / f"conversion_days-{uuid.uuid4().hex[:8]}"
    dbt_cli(project, target.name).cli(["run", "--select", CONVERSION_DAYS_VIEW[1]], target_path=target_path).wait()


def run_job(
    target: Target,
    job_name: str = "attribution_all",
    *,
    partition_range: tuple[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    log_level: str = "INFO",
    instance: dg.DagsterInstance | None = None,
    run_id: str | None = None,
) -> dg.ExecuteInProcessResult:
    """Run ``job_name`` in-process: over ``partition_range``, or with the ``tags`` of a schedule's run request
    (range and coverage), or by default over every day that holds conversions."""
    if os.environ.get("ATTRIBUTION_DBT_FULL_REFRESH") == "1" and (partition_range or tags) is not None:
        # A full refresh rebuilds the partitioned dbt models from the selected window only: every other day
        # would vanish from int_match_candidates and the fact marts until the next full run.
        raise ValueError("a full refresh rebuilds every partition: drop --start/--end, or drop --full-refresh")
    # Nothing may be hashed before the warehouse has its salt (warehouse/privacy.py); refuses a public salt.
    ensure_warehouse_salt(Warehouse(target), full_refresh=os.environ.get("ATTRIBUTION_DBT_FULL_REFRESH") == "1")
    defs = load_definitions(target)
    job = defs.resolve_job_def(job_name)
    if tags is not None:
        run_tags = dict(tags)
    elif partition_range is not None:
        run_tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
    else:
        # Every day that holds conversions: the run covers every load so far (the schedules start after it).
        covered = newest_load(Warehouse(target))
        run_tags = {**data_partition_range(target, job), **coverage_tags(covered)}
    if instance is None:
        instance = project_instance(target)
    run_id = run_id or str(uuid.uuid4())
    install_interruptible_slot_wait()
    # The run records its process, and the processes it starts (dbt) inherit its id: if this process dies, the
    # next start finds the run dead and frees what it held (cli/recovery.py).
    previous = os.environ.get(RUN_ID_ENV)
    os.environ[RUN_ID_ENV] = run_id
    try:
        return job.execute_in_process(
            instance=instance,
            tags={**run_tags, **process_tags()},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=False,
            run_id=run_id,
        )
    finally:
        if previous is None:
            os.environ.pop(RUN_ID_ENV, None)
        else:
            os.environ[RUN_ID_ENV] = previous
        settle_own_run(instance, run_id, "stopped before it finished (interrupted)")


def install_interruptible_slot_wait() -> None:
    """Make a step that waits for a pool slot sleep between checks and give up on Ctrl-C or SIGTERM.

    Dagster 1.13's in-process executor loops on ``ActiveExecution.sleep_til_ready`` while a step waits for a slot,
    but ``InstanceConcurrencyContext.interval_to_next_pending_claim_check`` returns ``min(0, ...)``, never a
    positive wait: the loop spins at full CPU. And the loop has no interrupt checkpoint (Dagster only raises a
    captured SIGINT/SIGTERM inside a step), so a waiting run ignored both. This sleeps until the next claim check
    (at most 0.5 s at a time) and raises the captured interrupt; the concurrency context then frees the step's
    place in the queue and the run ends as failed.
    """
    from dagster._core.errors import DagsterExecutionInterruptedError
    from dagster._core.execution.plan.active import ActiveExecution
    from dagster._utils.interrupts import pop_captured_interrupt

    original = ActiveExecution.sleep_til_ready
    if getattr(original, "_attribution_patched", False):
        return

    def sleep_til_ready(self: ActiveExecution) -> None:
        if pop_captured_interrupt():
            raise DagsterExecutionInterruptedError("interrupted while waiting for a pool slot")
        context = getattr(self, "_instance_concurrency_context", None)
        if context is None or not context.has_pending_claims():
            original(self)
            return
        now = time.time()
        checks = [at - now for at in getattr(context, "_pending_timeouts", {}).values()]
        time.sleep(min(max(min(checks, default=0.5), 0.05), 0.5))

    sleep_til_ready._attribution_patched = True  # type: ignore[attr-defined]
    ActiveExecution.sleep_til_ready = sleep_til_ready  # type: ignore[method-assign]
