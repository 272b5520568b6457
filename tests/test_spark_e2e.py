"""The experimental Spark target end to end: the reliability scenario's world, run on DuckDB and on Spark, gives the
same marts (row checksums, floats rounded to 1e-9). One module, one JVM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from cli.runner import run_job
from tests.conftest import assert_run_ok, mart_row_checksums, module_target
from tests.test_reliability import write_worlds
from warehouse.client import Warehouse
from warehouse.loader import load_folder

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


def _marts(name: str, world_dir: Path, work: Path) -> dict[str, str]:
    with module_target(name, work) as target:
        wh = Warehouse(target)
        load_folder(wh, world_dir)
        (work / "dagster_instance").mkdir()
        instance = dg.DagsterInstance.local_temp(str(work / "dagster_instance"))
        assert_run_ok(run_job(target, instance=instance, log_level="WARNING"))
        return mart_row_checksums(wh)


@pytest.fixture(scope="module")
def marts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    pytest.importorskip("pyspark")
    work = tmp_path_factory.mktemp("spark_e2e")
    world_dir, _, _ = write_worlds(work)
    yield {name: _marts(name, world_dir, work / name) for name in ("duckdb", "spark")}


def test_spark_marts_equal_duckdb_marts(marts: dict[str, dict[str, str]]) -> None:
    duckdb, spark = marts["duckdb"], marts["spark"]
    changed = {m: (duckdb[m], spark.get(m)) for m in duckdb if spark.get(m) != duckdb[m]}
    assert not changed, f"Spark marts differ from DuckDB's (duckdb, spark): {changed}"
