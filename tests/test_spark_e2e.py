"""The experimental Spark target end to end: the reliability scenario's clean run, on Spark, gives the marts the
DuckDB and PostgreSQL runs recorded (row checksums, floats rounded to 1e-9). One module, one JVM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from cli.runner import run_job
from tests.conftest import assert_run_ok, mart_row_checksums, module_target
from tests.test_reliability import MART_CHECKSUMS, write_worlds
from warehouse.client import Warehouse
from warehouse.loader import load_folder

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def spark_marts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    pytest.importorskip("pyspark")
    work = tmp_path_factory.mktemp("spark_e2e")
    world_dir, _, _ = write_worlds(work)
    with module_target("spark", work / "main") as target:
        wh = Warehouse(target)
        load_folder(wh, world_dir)
        (work / "dagster_instance").mkdir()
        instance = dg.DagsterInstance.local_temp(str(work / "dagster_instance"))
        assert_run_ok(run_job(target, instance=instance, log_level="WARNING"))
        yield mart_row_checksums(wh)


def test_spark_marts_equal_the_recorded_duckdb_marts(spark_marts: dict[str, str]) -> None:
    recorded = json.loads(Path(MART_CHECKSUMS).read_text())["duckdb"]
    changed = {m: (recorded.get(m), c) for m, c in spark_marts.items() if recorded.get(m) != c}
    assert not changed, f"Spark marts differ from DuckDB's (duckdb, spark): {changed}"
