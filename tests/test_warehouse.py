"""Warehouse behaviour the assets rely on beyond plain reads and writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestration.warehouse import Warehouse
from tests.conftest import make_target

SETTINGS = {"preserve_insertion_order": False, "disabled_compression_methods": "dict_fsst"}


def current(conn: Any) -> tuple[object, object]:
    return conn.execute(
        "select current_setting('preserve_insertion_order'), current_setting('disabled_compression_methods')"
    ).fetchone()


def test_duckdb_transaction_settings_hold_inside_and_are_restored_after(tmp_path: Path) -> None:
    """DuckDB settings are global to the database instance, which every connection of a process shares (as the
    steps of an in-process Dagster run do): one step's tuning must not leak into the next."""
    wh = Warehouse(make_target("duckdb", tmp_path))
    with wh.connect() as other_step:  # keeps the instance, and any leaked setting, alive
        before = current(other_step)
        assert before == (True, "")
        with wh.transaction(SETTINGS) as conn:
            assert current(other_step) == (False, "DICT_FSST")
            conn.execute("create table t as select 1 as x")
        assert current(other_step) == before
        with pytest.raises(ZeroDivisionError), wh.transaction(SETTINGS) as conn:
            conn.execute("insert into t values (2)")
            raise ZeroDivisionError  # the step fails mid-transaction: rolled back, settings still restored
        assert current(other_step) == before
        assert other_step.execute("select count(*) from t").fetchone() == (1,)


@pytest.mark.postgres
def test_postgres_sessions_get_work_mem_and_no_jit(tmp_path: Path, pg_database: str) -> None:
    """The Python assets' joins over millions of identifiers need more than the server's 4MB default."""
    wh = Warehouse(make_target("postgres", tmp_path, pg_database))
    with wh.connect() as conn:
        assert wh.scalar("select current_setting('work_mem')", conn) == "256MB"
        assert wh.scalar("select current_setting('jit')", conn) == "off"
        assert wh.scalar("select current_setting('TimeZone')", conn) == "UTC"
