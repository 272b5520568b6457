"""Resources, configured from the environment in one place (the target comes from settings.resolve_target)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from orchestration.dbt_in_process import InProcessDbtCliResource
from orchestration.settings import PipelineSettings
from warehouse.client import Warehouse
from warehouse.target import Target, resolve_target


def dbt_executable() -> str:
    """The dbt installed beside the running interpreter: cron, systemd units and IDE run buttons start
    ``.venv/bin/attribution`` without ``.venv/bin`` on PATH, where dagster-dbt's default lookup finds no dbt."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def dbt_cli(project: DbtProject, target: str) -> DbtCliResource:
    # dbt runs in this process, over a manifest parsed once (orchestration/dbt_in_process.py).
    return InProcessDbtCliResource(
        project_dir=project, target=target, profiles_dir=str(project.profiles_dir), dbt_executable=dbt_executable()
    )


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse Python assets read from and write to; the target name is the only configuration."""

    target: str = "duckdb"

    def get(self) -> Warehouse:
        return Warehouse(resolve_target(self.target))


def make_resources(target: Target, project: DbtProject, settings: PipelineSettings) -> dict[str, Any]:
    return {
        "settings": settings,
        "warehouse": WarehouseResource(target=target.name),
        "dbt": dbt_cli(project, target.name),
    }


def executor_for(target: Target) -> dg.ExecutorDefinition:
    # DuckDB allows one writer process: every step of a run executes in the run's own process, one at a time.
    # PostgreSQL takes concurrent writers, so independent steps may run in parallel. Spark's session (and its
    # metastore) belongs to one process: every step runs in it.
    if target.is_duckdb or target.is_spark:
        return dg.in_process_executor
    return dg.multiprocess_executor.configured({"max_concurrent": 2})
