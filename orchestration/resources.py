"""Resources, configured from the environment in one place (the target comes from settings.resolve_target)."""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from orchestration.settings import Target, resolve_target
from orchestration.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse Python assets read from and write to; the target name is the only configuration."""

    target: str = "duckdb"

    def get(self) -> Warehouse:
        return Warehouse(resolve_target(self.target))


def make_resources(target: Target, project: DbtProject) -> dict[str, Any]:
    return {
        "warehouse": WarehouseResource(target=target.name),
        "dbt": DbtCliResource(project_dir=project, target=target.name, profiles_dir=str(project.profiles_dir)),
    }


def executor_for(target: Target) -> dg.ExecutorDefinition:
    # DuckDB allows one writer process: every step of a run executes in the run's own process, one at a time.
    # PostgreSQL takes concurrent writers, so independent steps may run in parallel.
    if target.is_duckdb:
        return dg.in_process_executor
    return dg.multiprocess_executor.configured({"max_concurrent": 2})
