"""Warehouse I/O for Python assets and the CLI: the same calls on DuckDB, PostgreSQL and Spark.

Bulk data always moves in bulk: DuckDB scans pandas frames natively, PostgreSQL uses ``COPY`` in both
directions, Spark exchanges Arrow tables with the driver. Table replacement is atomic on DuckDB and PostgreSQL
(build beside, swap in one transaction), so a reader never sees an empty or half-built table. Spark's Parquet
tables have no transactions: a replacement is one overwrite, and a failed step is rerun.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from warehouse.target import SCHEMAS, Target

# PostgreSQL type OIDs → how a COPY'd CSV column is parsed back into pandas.
_PG_BOOL = {16}
_PG_INT = {20, 21, 23}
_PG_FLOAT = {700, 701, 1700}
_PG_TIMESTAMPTZ = {1184}
_PG_TIMESTAMP = {1114}
_PG_DATE = {1082}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def sql_type_for(series: pd.Series) -> str:
    """Portable column type for a pandas column (both engines accept these names)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double precision"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamp with time zone"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "timestamp"
    if pd.api.types.is_object_dtype(dtype) and len(series.dropna()):
        first = series.dropna().iloc[0]
        if isinstance(first, bool):
            return "boolean"
        # datetime.datetime is a subclass of date: only plain dates become a date column.
        if isinstance(first, date) and not isinstance(first, datetime):
            return "date"
    return "text"


@dataclass(frozen=True)
class GroupedRows:
    """What :meth:`Warehouse.map_groups` gives: rows per destination table (pandas frames, or Spark DataFrames
    left on the executors) and the input frames when they were read to the driver (None otherwise)."""

    rows: dict[str, Any]
    inputs: list[pd.DataFrame] | None


class Warehouse:
    """A thin connection wrapper; open one per asset step and close it, never hold it across steps."""

    def __init__(self, target: Target):
        self.target = target

    @contextmanager
    def connect(self) -> Iterator[Any]:
        if self.target.is_spark:
            from warehouse import spark

            # The process's one session, shared with dbt: never stopped here (see warehouse/spark.py).
            yield spark.session(self.target.spark)
            return
        if self.target.is_duckdb:
            import duckdb

            self.target.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
            conn = duckdb.connect(str(self.target.duckdb_path))
            try:
                # Set after connecting: ICU is statically linked but not yet loaded at connect-time config.
                conn.execute("set TimeZone = 'UTC'")
                conn.execute(f"set memory_limit = '{self.target.duckdb_memory_limit}'")
                yield conn
            finally:
                conn.close()
        else:
            import psycopg2

            conn = psycopg2.connect(**self.target.postgres.dsn_kwargs())
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.close()

    @contextmanager
    def transaction(self, duckdb_settings: dict[str, object] | None = None) -> Iterator[Any]:
        """A connection whose statements commit together when the block ends, or not at all when it raises.

        PostgreSQL connections are already transactional (``connect`` commits on exit). DuckDB autocommits every
        statement unless told otherwise, so a step that dies between two writes would leave the first one
        committed: writes that belong together go through this.

        ``duckdb_settings`` hold for the transaction and are restored after it (ignored on PostgreSQL). DuckDB's
        settings are global to the database instance, which every connection of the process shares: set for a
        whole run they would leak into the steps that follow in the same process.
        """
        with self.connect() as conn:
            if not self.target.is_duckdb:  # PostgreSQL: already transactional; Spark: none to be had
                yield conn
                return
            with _duckdb_settings(conn, duckdb_settings or {}):
                conn.execute("begin transaction")
                try:
                    yield conn
                except BaseException:
                    conn.execute("rollback")
                    raise
                conn.execute("commit")

    # -- generic statements -------------------------------------------------------------------------
    def execute(self, sql: str, conn: Any = None) -> None:
        if conn is None:
            with self.connect() as own:
                self.execute(sql, own)
            return
        if self.target.is_spark:
            from warehouse.spark import to_spark_sql

            conn.sql(to_spark_sql(sql)).collect()
        elif self.target.is_duckdb:
            conn.execute(sql)
        else:
            with conn.cursor() as cur:
                cur.execute(sql)

    def ensure_schemas(self, conn: Any = None) -> None:
        for schema in SCHEMAS:
            self.execute(f"create schema if not exists {quote_ident(schema)}", conn)

    def table_exists(self, schema: str, table: str, conn: Any = None) -> bool:
        if self.target.is_spark:
            if conn is None:
                with self.connect() as own:
                    return self.table_exists(schema, table, own)
            return bool(conn.catalog.tableExists(f"{schema}.{table}"))
        sql = (
            f"select count(*) from information_schema.tables where table_schema = '{schema}' and table_name = '{table}'"
        )
        return int(self.scalar(sql, conn) or 0) > 0

    def columns(self, schema: str, table: str, conn: Any = None) -> list[str]:
        if self.target.is_spark:
            if conn is None:
                with self.connect() as own:
                    return self.columns(schema, table, own)
            return list(conn.table(f"{schema}.{table}").columns)
        sql = (
            "select column_name from information_schema.columns "
            f"where table_schema = '{schema}' and table_name = '{table}' order by ordinal_position"
        )
        return list(self.query_df(sql, conn)["column_name"])

    def scalar(self, sql: str, conn: Any = None) -> Any:
        if conn is None:
            with self.connect() as own:
                return self.scalar(sql, own)
        if self.target.is_spark:
            from warehouse.spark import to_spark_sql

            rows = conn.sql(to_spark_sql(sql)).take(1)
            row = rows[0] if rows else None
        elif self.target.is_duckdb:
            # fetchall, not fetchone: DuckDB refuses other work on a connection with an unfinished result.
            rows = conn.execute(sql).fetchall()
            row = rows[0] if rows else None
        else:
            with conn.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
        return None if row is None else row[0]

    # -- reading ------------------------------------------------------------------------------------
    def query_df(self, sql: str, conn: Any = None, arrow: bool = False) -> pd.DataFrame:
        """The result of ``sql`` as a frame. ``arrow=True`` keeps DuckDB's Arrow batches as Arrow-backed columns
        (no per-value conversion: what large numeric or string extracts want)."""
        if conn is None:
            with self.connect() as own:
                return self.query_df(sql, own, arrow)
        if self.target.is_spark:
            from warehouse.spark import spark_to_frame, to_spark_sql

            return spark_to_frame(conn.sql(to_spark_sql(sql)))
        if self.target.is_duckdb:
            if arrow:
                return conn.sql(sql).to_arrow_table().to_pandas(types_mapper=pd.ArrowDtype)
            return conn.execute(sql).df()
        return _pg_query_df(conn, sql)

    @contextmanager
    def registered(self, name: str, df: pd.DataFrame, conn: Any) -> Iterator[str]:
        """``df`` visible to SQL on ``conn`` as the relation ``name`` for the duration of the block (DuckDB scans
        the frame in place; PostgreSQL gets a temporary table filled by COPY; Spark a temporary view)."""
        if self.target.is_spark:
            self.temp_table(name, df, conn)
            try:
                yield name
            finally:
                conn.catalog.dropTempView(name)
            return
        if self.target.is_duckdb:
            conn.register(name, df)
            try:
                yield name
            finally:
                conn.unregister(name)
            return
        self.temp_table(name, df, conn)
        try:
            yield name
        finally:
            self.execute(f"drop table if exists {quote_ident(name)}", conn)

    def temp_table(self, name: str, df: pd.DataFrame, conn: Any) -> None:
        """(Re)create the session-local temporary table ``name`` holding ``df``.

        On DuckDB a copy rather than :meth:`registered`'s in-place scan: joins against a copied table run in
        parallel, joins against a scanned frame largely do not.
        """
        if self.target.is_spark:
            from warehouse.spark import frame_to_spark

            frame_to_spark(conn, df).createOrReplaceTempView(name)
            return
        self.execute(f"drop table if exists {quote_ident(name)}", conn)
        if self.target.is_duckdb:
            with self.registered("_frame", df, conn):
                conn.execute(f"create temporary table {quote_ident(name)} as select * from _frame")
            return
        with conn.cursor() as cur:
            cur.execute(f"create temporary table {quote_ident(name)} ({_column_ddl(df)})")
            _pg_copy_in(cur, df, quote_ident(name))
            cur.execute(f"analyze {quote_ident(name)}")

    def map_groups(
        self,
        funcs: Mapping[str, Callable[..., pd.DataFrame]],
        queries: Sequence[str],
        key: str | None,
        schema: str,
        conn: Any = None,
    ) -> GroupedRows:
        """Each of ``funcs`` (destination table in ``schema`` → pure pandas function) applied to the frames of
        ``queries``, in that order, as rows for its table (pass them to :meth:`replace_rows`).

        DuckDB and PostgreSQL read each query once and call every function on the whole frames: the rows are
        pandas frames, and the frames read are kept (``inputs``). Spark calls the functions per ``key`` group on
        the executors (``warehouse/spark_groups.py``): the rows are Spark DataFrames, computed once (checkpointed)
        and never collected to the driver, and ``inputs`` is None. ``key`` None runs them on the driver on Spark
        too, over the whole frames. The functions must give the same rows either way: a result row may depend only
        on input rows with the same ``key`` (a conversion date: the steps work conversion by conversion), and they
        must not modify their inputs (every function is handed the same frames).
        """
        if conn is None:
            with self.connect() as own:
                return self.map_groups(funcs, queries, key, schema, own)
        if not self.target.is_spark or key is None:
            frames = [self.query_df(q, conn) for q in queries]
            return GroupedRows({table: func(*frames) for table, func in funcs.items()}, frames)
        from warehouse.spark import to_spark_sql
        from warehouse.spark_groups import map_groups, output_schema

        sources = [conn.sql(to_spark_sql(q)) for q in queries]
        if len(funcs) > 1:  # read the inputs once, not once per function
            sources = [s.localCheckpoint() for s in sources]
        rows = {}
        for table, func in funcs.items():
            spark_schema = output_schema(conn, f"{schema}.{table}", func, sources, key)
            rows[table] = map_groups(conn, func, sources, key, spark_schema).localCheckpoint()
        return GroupedRows(rows, None)

    # -- writing ------------------------------------------------------------------------------------
    def replace_table(self, df: pd.DataFrame, schema: str, table: str, conn: Any = None) -> int:
        """Atomically replace ``schema.table`` with ``df`` (readers see the old or the new table)."""
        if conn is None:
            with self.connect() as own:
                return self.replace_table(df, schema, table, own)
        self.execute(f"create schema if not exists {quote_ident(schema)}", conn)
        target = qualified(schema, table)
        if self.target.is_spark:
            from warehouse.spark import frame_to_spark

            frame_to_spark(conn, df).write.mode("overwrite").format("parquet").saveAsTable(f"{schema}.{table}")
            return len(df)
        if self.target.is_duckdb:
            with self.registered("_frame", df, conn):
                conn.execute(f"create or replace table {target} as select * from _frame")
            return len(df)
        staging_name = f"{table}__swap"
        with conn.cursor() as cur:
            cur.execute(f"drop table if exists {qualified(schema, staging_name)}")
            cur.execute(f"create table {qualified(schema, staging_name)} ({_column_ddl(df)})")
            _pg_copy_in(cur, df, qualified(schema, staging_name))
            cur.execute(f"drop table if exists {target}")
            cur.execute(f"alter table {qualified(schema, staging_name)} rename to {quote_ident(table)}")
            # Fresh tables have no statistics; the joins that read them next would be planned blind.
            cur.execute(f"analyze {target}")
        return len(df)

    def replace_rows(self, df: pd.DataFrame | Any, schema: str, table: str, where: str, conn: Any = None) -> int:
        """Delete the rows matching ``where`` and insert ``df`` in one transaction (partition overwrite).

        Creates the table from ``df``'s columns when it does not exist yet. With ``conn`` given, the caller owns the
        transaction: pass a connection from ``transaction()`` so the delete never commits without the insert.
        On Spark ``df`` may also be a Spark DataFrame (rows from :meth:`map_groups`).
        """
        if conn is None:
            with self.transaction() as own:
                return self.replace_rows(df, schema, table, where, own)
        if self.target.is_spark:
            return self._spark_replace_rows(df, schema, table, where, conn)
        self.execute(f"create schema if not exists {quote_ident(schema)}", conn)
        target = qualified(schema, table)
        if not self.table_exists(schema, table, conn):
            self.execute(f"create table {target} ({_column_ddl(df)})", conn)
        self.execute(f"delete from {target} where {where}", conn)
        if df.empty:
            return 0
        columns = ", ".join(quote_ident(c) for c in df.columns)
        if self.target.is_duckdb:
            with self.registered("_frame", df, conn):
                conn.execute(f"insert into {target} ({columns}) select {columns} from _frame")
        else:
            with conn.cursor() as cur:
                _pg_copy_in(cur, df, target, columns=list(df.columns))
                cur.execute(f"analyze {target}")
        return len(df)

    def _spark_replace_rows(self, df: pd.DataFrame | Any, schema: str, table: str, where: str, conn: Any) -> int:
        """Parquet tables cannot delete rows: the kept rows and ``df`` are written back as the whole table. The kept
        rows are checkpointed first, since Spark refuses to overwrite a table that the same plan reads."""
        from warehouse.spark import frame_to_spark, to_spark_sql

        self.execute(f"create schema if not exists {quote_ident(schema)}", conn)
        incoming = frame_to_spark(conn, df) if isinstance(df, pd.DataFrame) else df
        if self.table_exists(schema, table, conn):
            kept = conn.table(f"{schema}.{table}").where(f"not coalesce({to_spark_sql(where)}, false)")
            incoming = kept.unionByName(incoming.select(*kept.columns)).localCheckpoint()
        incoming.write.mode("overwrite").format("parquet").saveAsTable(f"{schema}.{table}")
        return len(df) if isinstance(df, pd.DataFrame) else int(df.count())


def _setting_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "'" + str(value).replace("'", "''") + "'"


@contextmanager
def _duckdb_settings(conn: Any, settings: dict[str, object]) -> Iterator[None]:
    """``settings`` for the block, the previous values restored afterwards (outside any transaction: an aborted
    one refuses every statement)."""
    previous = {name: conn.execute("select current_setting(?)", [name]).fetchone()[0] for name in settings}
    for name, value in settings.items():
        conn.execute(f"set {name} = {_setting_literal(value)}")
    try:
        yield
    finally:
        for name, value in previous.items():
            conn.execute(f"set {name} = {_setting_literal(value)}")


def _column_ddl(df: pd.DataFrame) -> str:
    return ", ".join(f"{quote_ident(c)} {sql_type_for(df[c])}" for c in df.columns)


# Rows per COPY chunk: the CSV text of a chunk is held in memory (as UCS-4 once in a StringIO), never the whole
# frame's (3.2M credit rows at L would be ~1.3 GB of text).
_COPY_CHUNK_ROWS = 250_000


def _pg_copy_in(cur: Any, df: pd.DataFrame, target: str, columns: Sequence[str] | None = None) -> None:
    if df.empty:
        return
    cols = f" ({', '.join(quote_ident(c) for c in columns)})" if columns else ""
    for start in range(0, len(df), _COPY_CHUNK_ROWS):
        chunk = df.iloc[start : start + _COPY_CHUNK_ROWS].copy()
        for col in chunk.columns:
            dtype = chunk[col].dtype
            if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
                chunk[col] = chunk[col].map(lambda v: v.isoformat() if pd.notna(v) else None)
        text = io.StringIO()
        # NULL is an unquoted empty field in PostgreSQL's CSV format. pandas does not quote empty strings either, so
        # an empty string in a frame arrives as NULL (the frames written here hold ids and numbers, never '').
        chunk.to_csv(text, index=False, header=False, na_rep="")
        text.seek(0)
        cur.copy_expert(f"copy {target}{cols} from stdin with (format csv)", text)


def _pg_query_df(conn: Any, sql: str) -> pd.DataFrame:
    """``sql``'s rows as a frame, streamed by COPY and parsed by Arrow's multi-threaded CSV reader with each
    column's type taken from PostgreSQL (several times faster than parsing text in pandas, which dominated reading
    millions of rows). NULL is an unquoted empty field and a real empty string a quoted one, so both survive.

    The CSV goes to a temporary file and each Arrow column is dropped once converted: at the peak the process holds
    the frame and one column more, not the frame, the Arrow table and the CSV text."""
    with conn.cursor() as cur, tempfile.TemporaryFile() as buf:
        cur.execute(f"select * from ({sql}) as _q limit 0")
        names = [d.name for d in cur.description]
        oids = [d.type_code for d in cur.description]
        cur.copy_expert(f"copy ({sql}) to stdout with (format csv, header false)", buf)
        # Positional keys: a query may return two columns of one name.
        keys = [f"c{i}" for i in range(len(names))]
        types = {k: _arrow_type(o) for k, o in zip(keys, oids, strict=True)}
        if buf.tell():
            buf.seek(0)
            table = _read_csv(buf, keys, types)
        else:
            # Arrow's reader needs at least one row; empty typed columns give the same dtypes as a full result.
            table = pa.table({k: pa.array([], type=t) for k, t in types.items()})
    columns = []
    for key, oid in zip(keys, oids, strict=True):
        columns.append(_pandas_column(table.column(key), oid))
        table = table.drop_columns([key])
    frame = pd.concat(columns, axis=1, keys=keys)
    frame.columns = names
    return frame


def _read_csv(buf: Any, keys: list[str], types: Mapping[str, pa.DataType]) -> pa.Table:
    return pa_csv.read_csv(
        buf,
        read_options=pa_csv.ReadOptions(column_names=keys),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict(types),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
            timestamp_parsers=[pa_csv.ISO8601],
        ),
    )


def _arrow_type(oid: int) -> pa.DataType:
    if oid in _PG_BOOL:
        return pa.bool_()
    if oid in _PG_INT:
        return pa.int64()
    if oid in _PG_FLOAT:
        return pa.float64()
    if oid in _PG_TIMESTAMPTZ:
        return pa.timestamp("us", tz="UTC")
    if oid in _PG_TIMESTAMP:
        return pa.timestamp("us")
    if oid in _PG_DATE:
        return pa.date32()
    return pa.string()


def _pandas_column(column: pa.ChunkedArray, oid: int) -> pd.Series:
    """The pandas dtypes the Python assets expect: nullable Int64 / boolean, float64, datetime64, datetime.date
    and text as object with None."""
    if oid in _PG_INT:
        return pd.Series(column.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get))
    if oid in _PG_BOOL:
        return pd.Series(column.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get))
    if oid in _PG_FLOAT or oid in _PG_TIMESTAMPTZ or oid in _PG_TIMESTAMP or oid in _PG_DATE:
        return pd.Series(column.to_pandas())
    return pd.Series(column.to_numpy(zero_copy_only=False), dtype=object)


def frame_checksum(df: pd.DataFrame) -> str:
    """Order-independent checksum of a frame's content, for idempotency checks."""
    if df.empty:
        return "empty:" + ",".join(df.columns)
    ordered = df[sorted(df.columns)]
    hashed = pd.util.hash_pandas_object(ordered.astype(str), index=False).to_numpy()
    return f"{len(df)}:{int(np.sort(hashed).sum(dtype=np.uint64))}"
