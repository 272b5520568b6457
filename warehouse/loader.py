"""`attribution load PATH`: append raw files to schema ``raw`` in one transaction.

Every raw column is stored as text exactly as delivered; typing, cleaning and deduplication belong to staging.
DuckDB reads the files with its native readers; PostgreSQL receives them through ``COPY``.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from warehouse.client import Warehouse, qualified, quote_ident

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw"
RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "links": ("link_id", "short_code", "campaign_id", "creator_id", "channel", "destination_url", "created_at"),
    "clicks": (
        "click_id", "link_id", "clicked_at", "ip", "user_agent", "referrer", "cookie_id", "session_id",
        "device_fingerprint", "user_id", "email",
    ),
    "conversions": (
        "conversion_id", "converted_at", "event_type", "revenue", "currency", "user_id", "email", "cookie_id",
        "session_id", "device_fingerprint", "ip", "user_agent", "click_id",
    ),
}  # fmt: skip
METADATA_COLUMNS = ("_loaded_at", "_source_file")
SUFFIXES = (".csv", ".csv.gz", ".parquet")


class LoadError(Exception):
    """A load that was refused; nothing of it was written."""


@dataclass(frozen=True)
class RawFile:
    table: str
    path: Path
    columns: tuple[str, ...]

    @property
    def format(self) -> str:
        return next(s for s in SUFFIXES[::-1] if self.path.name.endswith(s))


@dataclass
class LoadResult:
    loaded_at: datetime
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def raw_table_ddl(table: str) -> str:
    cols = [f"{quote_ident(c)} text" for c in RAW_COLUMNS[table]]
    cols += ['"_loaded_at" timestamp with time zone not null', '"_source_file" text not null']
    return f"create table if not exists {qualified(RAW_SCHEMA, table)} ({', '.join(cols)})"


def ensure_raw_tables(wh: Warehouse, conn: Any) -> None:
    wh.ensure_schemas(conn)
    for table in RAW_COLUMNS:
        wh.execute(raw_table_ddl(table), conn)
    wh.execute(
        f"create table if not exists {qualified(RAW_SCHEMA, 'load_log')} ("
        '"loaded_at" timestamp with time zone not null, "table_name" text not null, '
        '"source_file" text not null, "row_count" bigint not null)',
        conn,
    )


def _table_of(path: Path) -> str | None:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            for table in RAW_COLUMNS:
                if stem == table or stem.startswith(table + "_") or stem.startswith(table + "-"):
                    return table
    return None


def _header(path: Path) -> tuple[str, ...]:
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return tuple(pq.read_schema(path).names)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
        first = next(csv.reader(fh), None)
    if not first:
        raise LoadError(f"{path}: empty file, expected a header row")
    return tuple(c.strip().lstrip("\ufeff") for c in first)


def discover(folder: Path) -> list[RawFile]:
    """Find and validate the raw files of a folder before anything touches the warehouse."""
    if not folder.is_dir():
        raise LoadError(f"{folder}: not a folder")
    files = []
    for path in sorted(folder.iterdir()):
        table = _table_of(path)
        if table is not None and path.is_file():
            files.append(RawFile(table=table, path=path, columns=_header(path)))
    if not files:
        raise LoadError(f"{folder}: no raw files found (expected links, clicks, conversions as {', '.join(SUFFIXES)})")
    for f in files:
        missing = [c for c in RAW_COLUMNS[f.table] if c not in f.columns]
        if missing:
            raise LoadError(
                f"{f.path}: missing required column(s) {', '.join(missing)} for raw.{f.table}; nothing was loaded"
            )
    return files


def extra_columns(f: RawFile) -> list[str]:
    return [c for c in f.columns if c not in RAW_COLUMNS[f.table]]


def _next_loaded_at(wh: Warehouse, conn: Any) -> datetime:
    # Incremental staging selects rows loaded after its last watermark, so load stamps must strictly increase
    # even if the clock steps back.
    now = datetime.now(UTC)
    last = wh.scalar(f"select max(loaded_at) from {qualified(RAW_SCHEMA, 'load_log')}", conn)
    if last is not None:
        last = last if last.tzinfo else last.replace(tzinfo=UTC)
        if now <= last:
            now = last + timedelta(microseconds=1)
    return now


def newest_load(wh: Warehouse, conn: Any = None) -> datetime | None:
    """Stamp of the newest load (None before the first one)."""
    if conn is None:
        with wh.connect() as own:
            return newest_load(wh, own)
    if not wh.table_exists(RAW_SCHEMA, "load_log", conn):
        return None
    last = wh.scalar(f"select max(loaded_at) from {qualified(RAW_SCHEMA, 'load_log')}", conn)
    if last is None:
        return None
    return last if last.tzinfo else last.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LoadedEventDays:
    """Calendar days (as written in the raw text, before any UTC shift) of the events in a set of loads."""

    conversions: frozenset[date] = frozenset()
    clicks: frozenset[date] = frozenset()  # new clicks, and every click on a link that got a new version


def _iso_days(values: list[Any]) -> frozenset[date]:
    days = set()
    for value in values:
        try:
            days.add(date.fromisoformat(str(value)))
        except ValueError:
            continue  # junk text: staging rejects the row, it changes no partition
    return frozenset(days)


def event_days_loaded_after(wh: Warehouse, after: datetime | None, conn: Any = None) -> LoadedEventDays:
    """The days of the events that loads newer than ``after`` (every load when None) brought in.

    Raw timestamps are text with any UTC offset; only the date they are written with is read here, so a caller
    allows one day of margin. Values that do not start with an ISO date are left to staging's quarantine.
    """
    if conn is None:
        with wh.connect() as own:
            return event_days_loaded_after(wh, after, own)
    if not all(wh.table_exists(RAW_SCHEMA, t, conn) for t in RAW_COLUMNS):
        return LoadedEventDays()
    newer = "1 = 1" if after is None else f"_loaded_at > cast('{after.isoformat()}' as timestamp with time zone)"

    def days(column: str, table: str, where: str) -> frozenset[date]:
        value = f"trim({quote_ident(column)})"
        sql = (
            f"select distinct substr({value}, 1, 10) as day from {qualified(RAW_SCHEMA, table)} "
            f"where {value} like '____-__-__%' and ({where})"
        )
        return _iso_days(list(wh.query_df(sql, conn)["day"]))

    # A new version of a link changes the campaign, creator and channel credited for every click on it.
    relinked = f"trim(link_id) in (select trim(link_id) from {qualified(RAW_SCHEMA, 'links')} where {newer})"
    return LoadedEventDays(
        conversions=days("converted_at", "conversions", newer),
        clicks=days("clicked_at", "clicks", f"{newer} or {relinked}"),
    )


def load_folder(wh: Warehouse, folder: Path) -> LoadResult:
    files = discover(folder)
    result = LoadResult(loaded_at=datetime.now(UTC))
    for f in files:
        extras = extra_columns(f)
        if extras:
            msg = f"{f.path}: ignoring unknown column(s) {', '.join(extras)}"
            log.warning(msg)
            result.warnings.append(msg)
    with wh.connect() as conn:
        if wh.target.is_duckdb:
            conn.execute("begin transaction")
        try:
            ensure_raw_tables(wh, conn)
            loaded_at = _next_loaded_at(wh, conn)
            result.loaded_at = loaded_at
            for f in files:
                try:
                    n = _load_duckdb(conn, f, loaded_at) if wh.target.is_duckdb else _load_postgres(conn, f, loaded_at)
                except LoadError:
                    raise
                except Exception as exc:  # engine parse errors: name the file, keep the engine's words
                    raise LoadError(f"{f.path}: could not be read into raw.{f.table}: {exc}") from exc
                wh.execute(
                    f"insert into {qualified(RAW_SCHEMA, 'load_log')} values "
                    f"(cast('{loaded_at.isoformat()}' as timestamp with time zone), '{f.table}', "
                    f"'{_sql_str(str(f.path))}', {n})",
                    conn,
                )
                result.rows[f.table] = result.rows.get(f.table, 0) + n
                result.files.append(f.path)
            if wh.target.is_duckdb:
                conn.execute("commit")
            else:
                # Staging plans its scans of raw from statistics: refresh them with the new rows.
                for table in result.rows:
                    wh.execute(f"analyze {qualified(RAW_SCHEMA, table)}", conn)
        except BaseException:
            if wh.target.is_duckdb:
                conn.execute("rollback")
            raise
    return result


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def _select_list(f: RawFile, loaded_at: datetime, cast_text: bool) -> str:
    cols = [f"cast({quote_ident(c)} as varchar)" if cast_text else quote_ident(c) for c in RAW_COLUMNS[f.table]]
    cols.append(f"cast('{loaded_at.isoformat()}' as timestamp with time zone)")
    cols.append(f"'{_sql_str(str(f.path))}'")
    return ", ".join(cols)


def _load_duckdb(conn: Any, f: RawFile, loaded_at: datetime) -> int:
    path = _sql_str(str(f.path))
    if f.format == ".parquet":
        source = f"read_parquet('{path}')"
    else:
        # all_varchar keeps values exactly as delivered; staging decides what they mean.
        source = (
            f"read_csv('{path}', header = true, all_varchar = true, quote = '\"', escape = '\"', "
            "max_line_size = 4000000, strict_mode = false)"
        )
    insert_cols = ", ".join(quote_ident(c) for c in (*RAW_COLUMNS[f.table], *METADATA_COLUMNS))
    row = conn.execute(
        f"insert into {qualified(RAW_SCHEMA, f.table)} ({insert_cols}) "
        f"select {_select_list(f, loaded_at, cast_text=True)} from {source}"
    ).fetchone()
    return int(row[0]) if row else 0


def _load_postgres(conn: Any, f: RawFile, loaded_at: datetime) -> int:
    temp = f"_load_{f.table}"
    with conn.cursor() as cur:
        cur.execute(f"drop table if exists {quote_ident(temp)}")
        cur.execute(
            f"create temporary table {quote_ident(temp)} ("
            + ", ".join(f"{quote_ident(c)} text" for c in f.columns)
            + ") on commit drop"
        )
        copy_sql = f"copy {quote_ident(temp)} from stdin with (format csv, header {{header}})"
        if f.format == ".parquet":
            for chunk in _parquet_as_csv_chunks(f.path):
                cur.copy_expert(copy_sql.format(header="false"), chunk)
        else:
            opener = gzip.open if f.format == ".csv.gz" else open
            with opener(f.path, "rb") as fh:  # type: ignore[operator]
                cur.copy_expert(copy_sql.format(header="true"), fh)
        insert_cols = ", ".join(quote_ident(c) for c in (*RAW_COLUMNS[f.table], *METADATA_COLUMNS))
        cur.execute(
            f"insert into {qualified(RAW_SCHEMA, f.table)} ({insert_cols}) "
            f"select {_select_list(f, loaded_at, cast_text=False)} from {quote_ident(temp)}"
        )
        n = cur.rowcount
        cur.execute(f"drop table {quote_ident(temp)}")
    return int(n)


def _parquet_as_csv_chunks(path: Path, batch_rows: int = 500_000):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=batch_rows):
        table = pa.Table.from_batches([batch])
        table = table.cast(pa.schema([pa.field(n, pa.string()) for n in table.column_names]))
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
        buf.seek(0)
        yield buf
