"""The raw tables the loader appends to: external assets with freshness checks."""

from datetime import UTC, datetime

import dagster as dg

from orchestration.assets.common import env_float
from orchestration.assets.keys import RAW_TABLES
from orchestration.resources import WarehouseResource

# Raw data older than this (by load time) means deliveries stopped; a warning, not a blocker.
FRESHNESS_HOURS = env_float("ATTRIBUTION_RAW_FRESHNESS_HOURS", 26.0)

RAW_ASSETS = [
    dg.AssetSpec(
        key,
        group_name="raw",
        description=f"raw.{name}: appended by `attribution load` (all columns text, plus _loaded_at, _source_file).",
        metadata={"table": f"raw.{name}"},
    )
    for name, key in RAW_TABLES.items()
]


def _freshness_check(name: str, key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key,
        name="loaded_recently",
        description=f"The newest load into raw.{name} is at most {FRESHNESS_HOURS:g} hours old.",
        blocking=False,
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        wh = warehouse.get()
        with wh.connect() as conn:
            if not wh.table_exists("raw", name, conn):
                return dg.AssetCheckResult(passed=False, metadata={"reason": f"raw.{name} does not exist yet"})
            last = wh.scalar(f"select max(_loaded_at) from raw.{name}", conn)
            rows = wh.scalar(f"select count(*) from raw.{name}", conn)
        if last is None:
            return dg.AssetCheckResult(passed=False, metadata={"reason": "no rows loaded", "rows": 0})
        last = last if last.tzinfo else last.replace(tzinfo=UTC)
        age_hours = (datetime.now(UTC) - last).total_seconds() / 3600
        return dg.AssetCheckResult(
            passed=age_hours <= FRESHNESS_HOURS,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"last_loaded_at": last.isoformat(), "age_hours": round(age_hours, 2), "rows": int(rows)},
        )

    return _check


RAW_CHECKS = [_freshness_check(name, key) for name, key in RAW_TABLES.items()]
