"""The Spark target end to end: the reliability scenario's world, run on DuckDB and on Spark, gives the
same marts (row checksums, floats rounded to 1e-9). One module, one JVM.

The DuckDB run of that world is the reliability scenario's clean run when another worker of this session has already
made it (tests/test_reliability.py shares its marts' row checksums: the same files, loaded and run the same way);
otherwise this module runs it itself, after the Spark run.

On Spark the run's last step publishes the marts (database marts_published, equal to the marts), and raw retention
at a zero-day window (dbt in this process: the embedded metastore admits one JVM) leaves raw with hashes only and
staging as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.runner import project_instance, run_job
from orchestration.assets.keys import PUBLISHED_MARTS
from orchestration.dbt_in_process import InProcessDbt
from orchestration.settings import dbt_var
from tests.conftest import (
    MARTS,
    assert_run_ok,
    mart_row_checksums,
    module_target,
    rounded_checksum,
    shared_result,
)
from tests.test_reliability import clean_marts_result, write_worlds
from warehouse.client import Warehouse, frame_checksum
from warehouse.loader import load_folder
from warehouse.target import PROJECT_ROOT, PUBLISHED_SCHEMA, Target, target_env

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

STAGED = ("stg_raw__clicks", "stg_raw__conversions", "stg_raw__links")
RETAINED = ("email", "ip", "user_id", "cookie_id")


def _staging_checksums(wh: Warehouse) -> dict[str, str]:
    with wh.connect() as conn:
        return {t: frame_checksum(wh.query_df(f"select * from staging.{t} order by 1", conn)) for t in STAGED}


def _dbt_in_process(target: Target, work: Path, *args: str) -> None:
    """dbt in this process, where the Spark session lives (a second JVM could not open the metastore)."""
    cmd = ["dbt", *args, "--project-dir", str(PROJECT_ROOT), "--profiles-dir", str(PROJECT_ROOT / "dbt_project")]
    cmd += ["--target", target.name, "--target-path", str(work / "dbt_retention")]
    proc = InProcessDbt(cmd, env=target_env(target), cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stdout.getvalue().decode()[-6000:]


def _retention(target: Target, wh: Warehouse, work: Path, mp: pytest.MonkeyPatch) -> dict[str, object]:
    """Raw retention at a zero-day window: what it left in raw, in staging and in its summary."""
    before = _staging_checksums(wh)
    mp.setenv("ATTRIBUTION_RAW_RETENTION_DAYS", "0")
    _dbt_in_process(target, work, "build", "--select", "raw_retention")
    junk = ", ".join(f"'{v}'" for v in ["", *dbt_var("junk_identifier_values")])
    with wh.connect() as conn:
        clear = {
            f"{table}.{column}": int(
                wh.scalar(
                    f"select count(*) from raw.{table} where {column} not like 'sha256:%' "
                    f"and lower(trim({column})) not in ({junk})",
                    conn,
                )
            )
            for table in ("clicks", "conversions")
            for column in RETAINED
        }
        summary = wh.query_df("select * from staging.raw_retention", conn)
    return {"staging_unchanged": _staging_checksums(wh) == before, "clear": clear, "summary": summary}


def _run(name: str, world_dir: Path, work: Path) -> dict[str, object]:
    with module_target(name, work) as target, pytest.MonkeyPatch.context() as mp:
        wh = Warehouse(target)
        load_folder(wh, world_dir)
        instance = project_instance(target, work / "dagster_instance")
        result = run_job(target, instance=instance, log_level="WARNING")
        assert_run_ok(result)
        out: dict[str, object] = {
            "marts": mart_row_checksums(wh),
            "materialized": {e.asset_key for e in result.get_asset_materialization_events()},
        }
        if target.is_spark:
            with wh.connect() as conn:
                out["published"] = {
                    m: rounded_checksum(wh.query_df(f"select * from {PUBLISHED_SCHEMA}.{m}", conn)) for m in MARTS
                }
            out["retention"] = _retention(target, wh, work, mp)
        return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, object]]]:
    pytest.importorskip("pyspark")
    work = tmp_path_factory.mktemp("spark_e2e")
    world_dir, _, _ = write_worlds(work)
    runs = {"spark": _run("spark", world_dir, work / "spark")}
    shared = shared_result(tmp_path_factory, clean_marts_result("duckdb"))
    runs["duckdb"] = {"marts": shared} if shared is not None else _run("duckdb", world_dir, work / "duckdb")
    yield runs


def test_spark_marts_equal_duckdb_marts(runs: dict[str, dict[str, object]]) -> None:
    duckdb, spark = runs["duckdb"]["marts"], runs["spark"]["marts"]
    changed = {m: (duckdb[m], spark.get(m)) for m in duckdb if spark.get(m) != duckdb[m]}
    assert not changed, f"Spark marts differ from DuckDB's (duckdb, spark): {changed}"


def test_spark_run_publishes_the_marts(runs: dict[str, dict[str, object]]) -> None:
    spark = runs["spark"]
    assert PUBLISHED_MARTS in spark["materialized"]
    assert spark["published"] == spark["marts"]


def test_spark_raw_retention_keeps_only_hashes_and_leaves_staging_as_it_was(
    runs: dict[str, dict[str, object]],
) -> None:
    retention = runs["spark"]["retention"]
    assert retention["staging_unchanged"]
    assert not {k: n for k, n in retention["clear"].items() if n}, retention["clear"]
    summary = retention["summary"]
    assert set(summary["rows_with_clear_identifiers"]) == {0} and summary["rows_past_window"].sum() > 0
