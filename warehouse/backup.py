"""`attribution backup DIR` / `attribution restore DIR`: schema ``raw`` to Parquet files and back.

Everything downstream of ``raw`` is rebuilt by dbt and Dagster, so ``raw`` is the one thing a backup must hold.
A backup folder holds one Parquet file per raw table (``raw.<table>.parquet``) and a ``manifest.json`` written
last, so a folder without a manifest is an unfinished backup:

    {"format": "attribution-raw-backup", "version": 1, "created_at": "...Z", "target": "duckdb",
     "source": "duckdb (/path/warehouse.duckdb)", "schema": "raw",
     "tables": {"clicks": {"file": "raw.clicks.parquet", "rows": 2, "bytes": 4711, "sha256": "...",
                           "columns": [{"name": "click_id", "type": "text"}, ...]}, ...}}

Column types use portable names (``text``, ``timestamptz``, ``bigint``, …) so a backup taken on one engine
restores into the other; values keep their exact type (text stays text, NULL stays NULL, '' stays '',
timestamptz stays a UTC instant with microseconds). Both directions stream in bounded memory: DuckDB reads and
writes Parquet natively, PostgreSQL goes through ``COPY`` in chunks and pyarrow.

On Spark the session reads each table and writes Parquet files into a hidden folder beside the backup file, which
pyarrow then copies into the one file (``raw.<table>.parquet``, the portable schema) in batches of
``SPARK_BATCH_ROWS`` rows: the driver holds about one row group of Spark's files (``parquet.block.size``, 128 MB)
and one batch, never the table. Restore has Spark read the verified file and overwrite each table (executors read
it: on a cluster, the backup folder must be on storage they share). Spark has no transactions and no snapshot:
nothing else may write the warehouse during a backup (the embedded metastore admits this process alone), and a
restore that fails part-way leaves the tables it reached restored (every check that can refuse a restore runs
before the first write; run it again with ``--force``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warehouse.client import Warehouse, qualified, quote_ident
from warehouse.loader import RAW_SCHEMA, ensure_raw_tables

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "attribution-raw-backup"
MANIFEST_VERSION = 1
# PostgreSQL backup: CSV bytes gathered from COPY before they are parsed into one Parquet row group.
CHUNK_BYTES = 64 * 1024 * 1024
# PostgreSQL restore: Parquet rows sent per COPY FROM STDIN.
CHUNK_ROWS = 100_000
# Spark backup: rows per batch copied from Spark's Parquet files into the backup file.
SPARK_BATCH_ROWS = 10_000

# Portable type name → DDL accepted by both engines. Only types whose values survive both engines and Parquet
# exactly are listed; anything else is refused rather than silently turned into something else.
TYPE_DDL: dict[str, str] = {
    "text": "text",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp",
    "date": "date",
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "real": "real",
    "double": "double precision",
    "boolean": "boolean",
}
# Portable type name → Spark's (its timestamp is an instant; timestamp_ntz the wall-clock time).
SPARK_DDL: dict[str, str] = {
    "text": "string",
    "timestamptz": "timestamp",
    "timestamp": "timestamp_ntz",
    "date": "date",
    "smallint": "smallint",
    "integer": "int",
    "bigint": "bigint",
    "real": "float",
    "double": "double",
    "boolean": "boolean",
}
# information_schema.columns.data_type on either engine (lower-cased) → portable type name.
_ENGINE_TYPES: dict[str, str] = {
    "text": "text",
    "varchar": "text",
    "character varying": "text",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "timestamp": "timestamp",
    "date": "date",
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "real": "real",
    "float": "real",
    "double precision": "double",
    "double": "double",
    "boolean": "boolean",
}
# Spark's simpleString of a column type → portable type name.
_SPARK_TYPES: dict[str, str] = {spark: portable for portable, spark in SPARK_DDL.items()}


class BackupError(Exception):
    """A backup that could not be written; the folder holds no manifest for it."""


class RestoreError(BackupError):
    """A restore that was refused or failed; nothing of it was kept in the warehouse."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class TableEntry:
    table: str
    file: str
    rows: int
    sha256: str
    bytes: int
    columns: tuple[Column, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "columns": [{"name": c.name, "type": c.type} for c in self.columns],
        }


@dataclass
class Manifest:
    created_at: str
    target: str
    source: str
    tables: dict[str, TableEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "created_at": self.created_at,
            "target": self.target,
            "source": self.source,
            "schema": RAW_SCHEMA,
            "tables": {name: entry.to_json() for name, entry in sorted(self.tables.items())},
        }


@dataclass
class RestoreResult:
    manifest: Manifest
    rows: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)


def file_name(table: str) -> str:
    name = f"{RAW_SCHEMA}.{table}.parquet"
    if Path(name).name != name or "\x00" in name:
        raise BackupError(f"{RAW_SCHEMA}.{table}: table name cannot be used as a file name")
    return name


def sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def raw_tables(wh: Warehouse, conn: Any, strict: bool = True) -> dict[str, tuple[Column, ...]]:
    """Every base table of schema ``raw`` with its columns as portable types, in table-name order.

    ``strict`` refuses a column whose type has no portable name; otherwise the engine's own name is kept.
    """
    if wh.target.is_spark:
        return _spark_raw_tables(conn, strict)
    df = wh.query_df(
        "select c.table_name, c.column_name, c.data_type from information_schema.columns c "
        "join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name "
        f"where c.table_schema = '{RAW_SCHEMA}' and t.table_type = 'BASE TABLE' "
        "order by c.table_name, c.ordinal_position",
        conn,
    )
    tables: dict[str, list[Column]] = {}
    for table, column, data_type in df.itertuples(index=False, name=None):
        portable = _ENGINE_TYPES.get(str(data_type).lower())
        if portable is None and strict:
            raise BackupError(
                f"{RAW_SCHEMA}.{table}.{column}: type {data_type} cannot be backed up exactly "
                f"(supported: {', '.join(TYPE_DDL)})"
            )
        tables.setdefault(str(table), []).append(Column(str(column), portable or str(data_type).lower()))
    return {t: tuple(cols) for t, cols in sorted(tables.items())}


def _spark_raw_tables(spark: Any, strict: bool) -> dict[str, tuple[Column, ...]]:
    if not spark.catalog.databaseExists(RAW_SCHEMA):
        return {}
    tables: dict[str, tuple[Column, ...]] = {}
    listed = spark.catalog.listTables(RAW_SCHEMA)
    for table in sorted(t.name for t in listed if t.tableType != "VIEW" and not t.isTemporary):
        columns = []
        for f in spark.table(f"{RAW_SCHEMA}.{table}").schema.fields:
            engine = f.dataType.simpleString()
            portable = _SPARK_TYPES.get(engine)
            if portable is None and strict:
                raise BackupError(
                    f"{RAW_SCHEMA}.{table}.{f.name}: type {engine} cannot be backed up exactly "
                    f"(supported: {', '.join(TYPE_DDL)})"
                )
            columns.append(Column(f.name, portable or engine))
        tables[table] = tuple(columns)
    return tables


# -- backup -----------------------------------------------------------------------------------------------
def backup_raw(wh: Warehouse, folder: Path, chunk_bytes: int = CHUNK_BYTES) -> Manifest:
    """Write every table of schema ``raw`` to ``folder`` as Parquet plus ``manifest.json``.

    All tables are read from one snapshot, so ``load_log`` always agrees with the rows it describes even when a
    load runs concurrently.
    """
    folder = Path(folder)
    if (folder / MANIFEST_NAME).exists():
        raise BackupError(f"{folder / MANIFEST_NAME}: folder already holds a backup; choose an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        target=wh.target.name,
        source=wh.target.describe(),
    )
    written: list[Path] = []
    try:
        with wh.connect() as conn:
            if wh.target.is_duckdb:
                conn.execute("begin transaction")
            elif not wh.target.is_spark:  # PostgreSQL
                conn.set_client_encoding("UTF8")
                with conn.cursor() as cur:
                    # One consistent snapshot for every table; nothing in a backup writes.
                    cur.execute("set transaction isolation level repeatable read, read only")
                    cur.execute("set local timezone to 'UTC'")
                    cur.execute("set local datestyle to 'ISO, YMD'")
            tables = raw_tables(wh, conn)
            if not tables:
                raise BackupError(f"{wh.target.describe()}: schema {RAW_SCHEMA} holds no tables, nothing to back up")
            for table, columns in tables.items():
                path = folder / file_name(table)
                written.append(path)
                expected = int(wh.scalar(f"select count(*) from {qualified(RAW_SCHEMA, table)}", conn))
                if wh.target.is_duckdb:
                    _duckdb_copy_out(conn, table, columns, path)
                elif wh.target.is_spark:
                    _spark_copy_out(conn, table, columns, path)
                else:
                    _postgres_copy_out(conn, table, columns, path, chunk_bytes)
                rows = _parquet_rows(path)
                if rows != expected:
                    raise BackupError(
                        f"{RAW_SCHEMA}.{table}: wrote {rows} rows to {path} but the table holds {expected}"
                    )
                manifest.tables[table] = TableEntry(
                    table=table,
                    file=path.name,
                    rows=rows,
                    sha256=sha256_of(path),
                    bytes=path.stat().st_size,
                    columns=columns,
                )
            if wh.target.is_duckdb:
                conn.execute("commit")
        _write_manifest(folder, manifest)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return manifest


def _duckdb_copy_out(conn: Any, table: str, columns: tuple[Column, ...], path: Path) -> None:
    select = ", ".join(quote_ident(c.name) for c in columns)
    conn.execute(
        f"copy (select {select} from {qualified(RAW_SCHEMA, table)}) "
        f"to '{_sql_str(str(path))}' (format parquet, compression zstd)"
    )


def _spark_copy_out(spark: Any, table: str, columns: tuple[Column, ...], path: Path) -> None:
    """Spark writes the table's Parquet files into a hidden folder beside ``path``; they are copied into ``path``
    batch by batch with the portable schema, and the folder is removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in columns])
    parts = path.with_name(f".{path.name}.spark")
    shutil.rmtree(parts, ignore_errors=True)
    try:
        select = ", ".join(f"`{c.name}`" for c in columns)
        spark.sql(f"select {select} from `{RAW_SCHEMA}`.`{table}`").write.mode("overwrite").parquet(str(parts))
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for part in sorted(parts.glob("part-*")):
                # Spark may write timestamps as INT96 (nanoseconds): read at its own precision, microseconds.
                source = pq.ParquetFile(part, coerce_int96_timestamp_unit="us")
                for batch in source.iter_batches(batch_size=SPARK_BATCH_ROWS, columns=schema.names):
                    writer.write_table(pa.Table.from_batches([batch]).select(schema.names).cast(schema))
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def _arrow_type(portable: str) -> Any:
    import pyarrow as pa

    return {
        "text": pa.string(),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "timestamp": pa.timestamp("us"),
        "date": pa.date32(),
        "smallint": pa.int16(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "real": pa.float32(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
    }[portable]


class _CopyOutChunks:
    """File-like sink for ``COPY ... TO STDOUT`` that hands over complete rows in chunks of about ``chunk_bytes``.

    PostgreSQL sends exactly one CopyData message per row and psycopg2 calls ``write`` once per message, so the
    gathered bytes always end on a row boundary, even when a quoted value contains newlines.
    """

    def __init__(self, on_chunk: Callable[[bytes], None], chunk_bytes: int):
        self._on_chunk = on_chunk
        self._chunk_bytes = chunk_bytes
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | str) -> int:
        chunk = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size >= self._chunk_bytes:
            self.drain()
        return len(chunk)

    def drain(self) -> None:
        if self._parts:
            data = b"".join(self._parts)
            self._parts, self._size = [], 0
            self._on_chunk(data)


def _postgres_copy_out(conn: Any, table: str, columns: tuple[Column, ...], path: Path, chunk_bytes: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in columns])
    # A one-column row holding NULL is an empty line: a row, not something to skip.
    parse_options = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
    # PostgreSQL's CSV writes NULL as an unquoted empty field and an empty string as "": keep them apart.
    convert_options = pacsv.ConvertOptions(
        column_types=schema,
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )

    with pq.ParquetWriter(path, schema, compression="zstd") as writer:

        def write_chunk(data: bytes) -> None:
            # The whole chunk is one block, so no row (a 100 KB user agent, a quoted newline) straddles blocks.
            read_options = pacsv.ReadOptions(column_names=schema.names, block_size=len(data) + 1)
            chunk = pacsv.read_csv(
                io.BytesIO(data),
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            writer.write_table(chunk.select(schema.names).cast(schema))

        sink = _CopyOutChunks(write_chunk, chunk_bytes)
        select = ", ".join(quote_ident(c.name) for c in columns)
        with conn.cursor() as cur:
            cur.copy_expert(
                f"copy (select {select} from {qualified(RAW_SCHEMA, table)}) to stdout with (format csv)", sink
            )
        sink.drain()


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _write_manifest(folder: Path, manifest: Manifest) -> None:
    tmp = folder / (MANIFEST_NAME + ".partial")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST_NAME)


# -- verification -----------------------------------------------------------------------------------------
def read_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise RestoreError(f"{path}: no backup manifest (was the backup finished?)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != MANIFEST_FORMAT:
            raise RestoreError(f"{path}: not a raw backup manifest (format {doc.get('format')!r})")
        if doc.get("version") != MANIFEST_VERSION:
            raise RestoreError(f"{path}: unsupported manifest version {doc.get('version')!r}")
        manifest = Manifest(created_at=str(doc["created_at"]), target=str(doc["target"]), source=str(doc["source"]))
        for table, entry in doc["tables"].items():
            columns = tuple(Column(str(c["name"]), str(c["type"])) for c in entry["columns"])
            manifest.tables[table] = TableEntry(
                table=table,
                file=str(entry["file"]),
                rows=int(entry["rows"]),
                sha256=str(entry["sha256"]),
                bytes=int(entry["bytes"]),
                columns=columns,
            )
    except RestoreError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RestoreError(f"{path}: unreadable manifest: {exc!r}") from exc
    return manifest


def verify_backup(folder: Path) -> Manifest:
    """Check the manifest against the files (name, checksum, row count, columns) before touching a warehouse."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    manifest = read_manifest(folder)
    if not manifest.tables:
        raise RestoreError(f"{folder / MANIFEST_NAME}: the backup lists no tables")
    for table, entry in manifest.tables.items():
        where = f"{RAW_SCHEMA}.{table}"
        try:
            expected_name = file_name(table)
        except BackupError as exc:
            raise RestoreError(str(exc)) from exc
        if entry.file != expected_name:
            raise RestoreError(f"{where}: manifest names file {entry.file!r}, expected {expected_name!r}")
        unknown = [f"{c.name} ({c.type})" for c in entry.columns if c.type not in TYPE_DDL]
        if unknown:
            raise RestoreError(f"{where}: unsupported column type(s) in manifest: {', '.join(unknown)}")
        path = folder / entry.file
        if not path.is_file():
            raise RestoreError(f"{where}: file {path} is missing")
        digest = sha256_of(path)
        if digest != entry.sha256:
            raise RestoreError(
                f"{where}: checksum mismatch for {path} (manifest sha256 {entry.sha256}, file {digest}); "
                "the backup is damaged, nothing was restored"
            )
        meta = pq.ParquetFile(path)
        if meta.metadata.num_rows != entry.rows:
            raise RestoreError(f"{where}: {path} holds {meta.metadata.num_rows} rows, manifest says {entry.rows}")
        names = list(meta.schema_arrow.names)
        if names != [c.name for c in entry.columns]:
            raise RestoreError(f"{where}: {path} has columns {names}, manifest says {[c.name for c in entry.columns]}")
    return manifest


# -- restore ----------------------------------------------------------------------------------------------
def restore_raw(wh: Warehouse, folder: Path, force: bool = False, chunk_rows: int = CHUNK_ROWS) -> RestoreResult:
    """Load a verified backup into schema ``raw`` of an empty warehouse, in one transaction.

    With ``force`` every raw table is emptied first (in the same transaction); without it a warehouse whose raw
    schema holds any row is refused, naming the tables.
    """
    folder = Path(folder)
    manifest = verify_backup(folder)
    result = RestoreResult(manifest=manifest)
    with wh.connect() as conn:
        if wh.target.is_duckdb:
            conn.execute("begin transaction")
        elif not wh.target.is_spark:  # PostgreSQL
            conn.set_client_encoding("UTF8")
            with conn.cursor() as cur:
                cur.execute("set local timezone to 'UTC'")
                cur.execute("set local datestyle to 'ISO, YMD'")
        try:
            # Before any table is created: a refused restore leaves even Spark (no transactions) as it was.
            present = raw_tables(wh, conn, strict=False)
            counts = {t: int(wh.scalar(f"select count(*) from {qualified(RAW_SCHEMA, t)}", conn)) for t in present}
            occupied = {t: n for t, n in counts.items() if n}
            if occupied and not force:
                held = ", ".join(f"{RAW_SCHEMA}.{t} ({n:,} rows)" for t, n in occupied.items())
                raise RestoreError(
                    f"{wh.target.describe()}: schema {RAW_SCHEMA} already holds rows: {held}; restore needs an empty "
                    "warehouse (or --force to empty schema raw first)"
                )
            ensure_raw_tables(wh, conn)
            for table, entry in manifest.tables.items():
                if wh.target.is_spark:
                    ddl = ", ".join(f"`{c.name}` {SPARK_DDL[c.type]}" for c in entry.columns)
                    conn.sql(f"create table if not exists `{RAW_SCHEMA}`.`{table}` ({ddl}) using parquet")
                    continue
                ddl = ", ".join(f"{quote_ident(c.name)} {TYPE_DDL[c.type]}" for c in entry.columns)
                wh.execute(f"create table if not exists {qualified(RAW_SCHEMA, table)} ({ddl})", conn)
            existing = raw_tables(wh, conn, strict=False)
            _check_compatible(manifest, existing)
            for table in occupied:
                if wh.target.is_spark:
                    if table not in manifest.tables:  # the others are overwritten by their file
                        conn.sql(f"truncate table `{RAW_SCHEMA}`.`{table}`")
                    continue
                wh.execute(f"delete from {qualified(RAW_SCHEMA, table)}", conn)
            result.truncated = occupied
            for table, entry in manifest.tables.items():
                path = folder / entry.file
                if wh.target.is_duckdb:
                    _duckdb_copy_in(conn, table, entry, path)
                elif wh.target.is_spark:
                    _spark_copy_in(conn, table, entry, path, existing[table])
                else:
                    _postgres_copy_in(conn, table, entry, path, chunk_rows)
                n = int(wh.scalar(f"select count(*) from {qualified(RAW_SCHEMA, table)}", conn))
                if n != entry.rows:
                    raise RestoreError(f"{RAW_SCHEMA}.{table}: restored {n} rows, manifest says {entry.rows}")
                result.rows[table] = n
            if wh.target.is_duckdb:
                conn.execute("commit")
        except BaseException:
            if wh.target.is_duckdb:
                conn.execute("rollback")
            raise
    return result


def _check_compatible(manifest: Manifest, existing: dict[str, tuple[Column, ...]]) -> None:
    for table, entry in manifest.tables.items():
        have = {c.name: c.type for c in existing[table]}
        missing = [c.name for c in entry.columns if c.name not in have]
        if missing:
            raise RestoreError(f"{RAW_SCHEMA}.{table}: warehouse table lacks backed-up column(s) {', '.join(missing)}")
        differ = [f"{c.name} ({have[c.name]} vs {c.type})" for c in entry.columns if have[c.name] != c.type]
        if differ:
            raise RestoreError(
                f"{RAW_SCHEMA}.{table}: column type(s) differ between warehouse and backup: {', '.join(differ)}"
            )


def _duckdb_copy_in(conn: Any, table: str, entry: TableEntry, path: Path) -> None:
    names = ", ".join(quote_ident(c.name) for c in entry.columns)
    select = ", ".join(f"cast({quote_ident(c.name)} as {TYPE_DDL[c.type]})" for c in entry.columns)
    source = f"read_parquet('{_sql_str(str(path))}')"
    conn.execute(f"insert into {qualified(RAW_SCHEMA, table)} ({names}) select {select} from {source}")


def _spark_copy_in(spark: Any, table: str, entry: TableEntry, path: Path, columns: tuple[Column, ...]) -> None:
    """Overwrite ``raw.<table>`` with the file's rows: every column of the table in its order, those the backup
    lacks as NULL. The overwrite is static: the table is replaced whole even if it is partitioned (the session
    overwrites partitions dynamically otherwise)."""
    backed_up = {c.name for c in entry.columns}
    select = [
        f"cast({f'`{c.name}`' if c.name in backed_up else 'null'} as {SPARK_DDL.get(c.type, c.type)}) as `{c.name}`"
        for c in columns
    ]
    rows = spark.read.parquet(str(path)).selectExpr(*select)
    rows.write.option("partitionOverwriteMode", "static").insertInto(f"`{RAW_SCHEMA}`.`{table}`", overwrite=True)


def _postgres_copy_in(conn: Any, table: str, entry: TableEntry, path: Path, chunk_rows: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    names = [c.name for c in entry.columns]
    schema = pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in entry.columns])
    copy_sql = (
        f"copy {qualified(RAW_SCHEMA, table)} ({', '.join(quote_ident(n) for n in names)}) from stdin with (format csv)"
    )
    parquet = pq.ParquetFile(path)
    with conn.cursor() as cur:
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=names):
            chunk = pa.Table.from_batches([batch]).select(names).cast(schema)
            buf = io.BytesIO()
            # Arrow's CSV quotes every string and leaves NULL as an unquoted empty field: PostgreSQL's CSV rules.
            pacsv.write_csv(chunk, buf, pacsv.WriteOptions(include_header=False))
            buf.seek(0)
            cur.copy_expert(copy_sql, buf)
