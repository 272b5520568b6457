"""A BI reader in a process of its own, polling the published marts while a run replaces them.

Run as ``python -m tests.published_reader <target> <location> <tables> <log> <stop>``: <location> is the published
DuckDB file or a JSON object of PostgreSQL connection arguments; <tables> a comma-separated list of marts. Every
pass writes one JSON line to <log> with a signature of all marts read in *one* statement (per table: row count
and a hash of every row), so a snapshot mixing two runs shows up as a signature that is neither run's. On DuckDB
one connection is opened on the first file seen and held for the whole run (it must keep seeing that snapshot)
and another is opened afresh on every pass (it sees whichever snapshot is current). Stops when <stop> exists.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

PUBLISHED_SCHEMA_DUCKDB = "marts"


def signature_sql(schema: str, tables: list[str], row_text: str, row_hash: str) -> str:
    parts = [
        f"(select count(*) || ':' || coalesce(cast(sum({row_hash.format(row=row_text.format(alias='t'))}) as varchar), '0') "
        f"from {schema}.{table} t)"
        for table in tables
    ]
    return "select " + ", ".join(parts)


def duckdb_signature(conn: Any, tables: list[str]) -> list[str]:
    sql = signature_sql(PUBLISHED_SCHEMA_DUCKDB, tables, "cast({alias} as varchar)", "hash({row})")
    return list(conn.execute(sql).fetchone())


def postgres_signature(cur: Any, schema: str, tables: list[str]) -> list[str]:
    cur.execute(signature_sql(schema, tables, "{alias}::text", "hashtext({row})::bigint"))
    return list(cur.fetchone())


def main(target: str, location: str, tables: list[str], log: Path, stop: Path) -> None:
    with log.open("a") as out:

        def write(**entry: object) -> None:
            out.write(json.dumps({"at": time.time(), **entry}) + "\n")
            out.flush()

        if target == "duckdb":
            poll_duckdb(Path(location), tables, stop, write)
        else:
            poll_postgres(json.loads(location), tables, stop, write)


def poll_duckdb(path: Path, tables: list[str], stop: Path, write: Any) -> None:
    import duckdb

    held = None
    while not stop.exists():
        try:
            if path.exists():
                if held is None:
                    held = duckdb.connect(str(path), read_only=True)
                write(kind="held", signature=duckdb_signature(held, tables))
                fresh = duckdb.connect(str(path), read_only=True)
                try:
                    write(kind="fresh", signature=duckdb_signature(fresh, tables))
                finally:
                    fresh.close()
            else:
                write(kind="fresh", signature=None)
        except duckdb.Error as exc:
            write(kind="error", error=f"{type(exc).__name__}: {exc}")
        time.sleep(0.05)
    if held is not None:
        held.close()


def poll_postgres(settings: dict[str, Any], tables: list[str], stop: Path, write: Any) -> None:
    import psycopg2

    schema = settings.pop("schema")
    conn = psycopg2.connect(**settings)
    conn.autocommit = True  # as BI tools query: one statement at a time
    try:
        while not stop.exists():
            with conn.cursor() as cur:
                cur.execute("select count(*) from pg_catalog.pg_namespace where nspname = %s", (schema,))
                if cur.fetchone()[0] == 0:
                    write(kind="fresh", signature=None)
                else:
                    try:
                        write(kind="fresh", signature=postgres_signature(cur, schema, tables))
                    except psycopg2.Error as exc:
                        write(kind="error", error=f"{type(exc).__name__}: {str(exc).strip()}")
            time.sleep(0.05)
    finally:
        conn.close()


if __name__ == "__main__":
    target_name, where, names, log_path, stop_path = sys.argv[1:6]
    main(target_name, where, names.split(","), Path(log_path), Path(stop_path))
