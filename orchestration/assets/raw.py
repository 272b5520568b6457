"""The raw tables the loader appends to: external assets, with dbt's source freshness shown as their checks.

Freshness has one definition, the ``freshness`` and ``loaded_at_*`` settings of ``_raw__sources.yml``; this check
runs ``dbt source freshness`` and reports dbt's verdict per table, so the UI and the dbt prompt never disagree.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject

from orchestration.assets.keys import RAW_TABLES
from orchestration.dbt import invocation_target_path

RAW_ASSETS = [
    dg.AssetSpec(
        key,
        group_name="raw",
        description=f"raw.{name}: appended by `attribution load` (all columns text, plus _loaded_at, _source_file).",
        metadata={"table": f"raw.{name}"},
    )
    for name, key in RAW_TABLES.items()
]

FRESHNESS_CHECK = "dbt_source_freshness"


def freshness_results(sources: Mapping[str, Any]) -> Iterator[dg.AssetCheckResult]:
    """One check result per raw table from dbt's sources.json: dbt's pass passes, anything else fails with dbt's
    status in the metadata. Always a warning in Dagster: stale deliveries need a look, but attributing the data
    that did arrive must go on (a table dbt could not measure, e.g. not loaded yet, carries dbt's message)."""
    by_table = {r["unique_id"].rsplit(".", 1)[-1]: r for r in sources.get("results", [])}
    for name, key in RAW_TABLES.items():
        result = by_table.get(name)
        if result is None:
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=FRESHNESS_CHECK,
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"reason": f"dbt source freshness reported nothing for raw.{name}"},
            )
            continue
        status = result.get("status")
        metadata: dict[str, Any] = {"status": status}
        if result.get("max_loaded_at"):
            metadata["max_loaded_at"] = result["max_loaded_at"]
        if result.get("max_loaded_at_time_ago_in_s") is not None:
            metadata["age_hours"] = round(float(result["max_loaded_at_time_ago_in_s"]) / 3600, 2)
        if status == "runtime error":
            metadata["error"] = str(result.get("error") or result.get("message") or "")[:500]
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=FRESHNESS_CHECK,
            passed=status == "pass",
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
        )


def build_raw_checks(project: DbtProject) -> list[dg.AssetChecksDefinition]:
    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                FRESHNESS_CHECK,
                asset=key,
                blocking=False,
                description=f"dbt source freshness of raw.{name} (thresholds in models/staging/_raw__sources.yml).",
            )
            for name, key in RAW_TABLES.items()
        ],
        pool="warehouse",
    )
    def raw_freshness(context: dg.AssetCheckExecutionContext, dbt: DbtCliResource) -> Iterator[dg.AssetCheckResult]:
        target_path = invocation_target_path(project, "source-freshness", context.run.run_id)
        invocation = dbt.cli(["source", "freshness"], target_path=target_path, raise_on_error=False)
        invocation.wait()
        try:
            sources = invocation.get_artifact("sources.json")
        except FileNotFoundError:  # dbt stopped before measuring (e.g. the warehouse has no raw tables yet)
            sources = {}
        yield from freshness_results(sources)

    return [raw_freshness]
