"""Warehouse behaviour the assets rely on beyond plain reads and writes."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_target
from warehouse import client
from warehouse.client import Warehouse

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


TRICKY = """
select * from (values
    (1, 'plain', true, 1.5, cast(12.25 as numeric), timestamptz '2026-03-01 10:00:00.123456+00',
     timestamp '2026-03-01 10:00:00', date '2026-03-01', 'a'),
    (2, '', false, cast('NaN' as double precision), null, null, null, null, 'b'),
    (null, null, null, cast('Infinity' as double precision), cast(-3 as numeric),
     timestamptz '2026-03-02 23:59:59+01', null, null, 'c'),
    (4, E'comma, "quote"\\nnewline', true, null, cast(0 as numeric), null, null, date '2026-12-31', 'd')
) as v(n, txt, flag, x, amount, at_tz, at_local, day, txt2)
"""


@pytest.mark.postgres
def test_postgres_reads_every_type_nulls_and_empty_strings_exactly(tmp_path: Path, pg_database: str) -> None:
    """Reads stream COPY through Arrow's CSV reader: each column's type comes from PostgreSQL, NULL stays missing,
    an empty string stays an empty string, and quotes, commas and newlines inside text survive."""
    wh = Warehouse(make_target("postgres", tmp_path, pg_database))
    with wh.connect() as conn:
        frame = wh.query_df(
            f"select n, txt, flag, x, amount, at_tz, at_local, day, txt2 as txt from ({TRICKY}) t", conn
        )
        empty = wh.query_df(f"select * from ({TRICKY}) t where false", conn)
    assert list(frame.columns) == ["n", "txt", "flag", "x", "amount", "at_tz", "at_local", "day", "txt"]
    assert str(frame["n"].dtype) == "Int64" and frame["n"].isna().tolist() == [False, False, True, False]
    assert frame.iloc[:, 1].tolist() == ["plain", "", None, 'comma, "quote"\nnewline']
    assert frame.iloc[:, 1].dtype == object
    assert str(frame["flag"].dtype) == "boolean"
    assert frame["flag"].tolist()[:2] == [True, False] and pd.isna(frame["flag"].iloc[2])
    assert frame["x"].dtype == "float64" and frame["x"].iloc[0] == 1.5 and np.isnan(frame["x"].iloc[1])
    assert np.isinf(frame["x"].iloc[2]) and np.isnan(frame["x"].iloc[3])
    assert frame["amount"].tolist()[0] == 12.25 and np.isnan(frame["amount"].iloc[1])
    assert frame["at_tz"].dtype == pd.DatetimeTZDtype("us", "UTC")
    assert frame["at_tz"].iloc[0] == pd.Timestamp("2026-03-01 10:00:00.123456", tz="UTC")
    assert frame["at_tz"].iloc[2] == pd.Timestamp("2026-03-02 22:59:59", tz="UTC")
    assert frame["at_local"].iloc[0] == pd.Timestamp("2026-03-01 10:00:00") and pd.isna(frame["at_local"].iloc[1])
    assert frame["day"].tolist() == [date(2026, 3, 1), None, None, date(2026, 12, 31)]
    assert frame.iloc[:, 8].tolist() == ["a", "b", "c", "d"]
    # An empty result has the same dtypes as a full one.
    assert len(empty) == 0
    assert (empty.dtypes.iloc[:8] == frame.dtypes.iloc[:8]).all(), (empty.dtypes, frame.dtypes)


@pytest.mark.postgres
def test_postgres_writes_a_frame_in_chunks_without_losing_or_changing_a_row(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COPY goes out chunk by chunk (bounded memory): every row arrives once, with its nulls and timestamps."""
    monkeypatch.setattr(client, "_COPY_CHUNK_ROWS", 2)
    wh = Warehouse(make_target("postgres", tmp_path, pg_database))
    rows = pd.DataFrame(
        {
            "n": pd.array([1, 2, None, 4, 5], dtype="Int64"),
            "txt": ["a", None, 'comma, "quote"', "d", "e"],
            "at": pd.to_datetime(
                ["2026-03-01 10:00:00.5", None, "2026-03-02", "2026-03-03", "2026-03-04"], utc=True, format="ISO8601"
            ),
        }
    )
    with wh.transaction() as conn:
        assert wh.replace_rows(rows, "intermediate", "chunked", "1 = 1", conn) == 5
    with wh.connect() as conn:
        back = wh.query_df("select n, txt, at from intermediate.chunked order by n nulls first", conn)
    assert pd.isna(back["n"].iloc[0]) and back["n"].tolist()[1:] == [1, 2, 4, 5]
    assert back["txt"].tolist() == ['comma, "quote"', "a", None, "d", "e"]
    assert pd.isna(back["at"].iloc[2])
    assert back["at"].drop(index=2).tolist() == [
        pd.Timestamp(t, tz="UTC") for t in ("2026-03-02", "2026-03-01 10:00:00.5", "2026-03-03", "2026-03-04")
    ]
