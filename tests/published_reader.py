"""A BI reader in a process of its own, polling the published marts while a run replaces them.

Run as ``python -m tests.published_reader <mode> <target> <location> <tables> <log> <stop>``: <location> is the
published DuckDB file or a JSON object of PostgreSQL connection arguments; <tables> a comma-separated list of
marts. Every pass writes one JSON line to <log> with a signature of all marts read in *one* statement (per table:
row count and a hash of every row), so a snapshot mixing two runs shows up as a signature that is neither run's.
Mode ``fresh`` connects afresh on every pass (it sees whichever snapshot is current); mode ``held`` (DuckDB) opens
one connection on the first file it finds and keeps it for the whole run (it must keep seeing that snapshot).
DuckDB shares one database instance between the connections of a process that open the same path, so the two
modes run in processes of their own. Stops when <stop> exists.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

PUBLISHED_SCHEMA_DUCKDB = "marts"


def signature_sql(schema: str, tables: list[str], row_text: str, row_hash: str) -> str:
    row_sum = f"sum({row_hash.format(row=row_text.format(alias='t'))})"
    parts = [
        f"(select count(*) || ':' || coalesce(cast({row_sum} as varchar), '0') from {schema}.{table} t)"
        for table in tables
    ]
    return "select " + ", ".join(parts)


# Between reads: each read hashes every published row, and a busier reader only takes CPU from the run it watches
# (the snapshot is swapped whole, so how often it is read does not change what a read can see).
POLL_SECONDS = 0.3


def duckdb_signature(conn: Any, tables: list[str]) -> list[str]:
    sql = signature_sql(PUBLISHED_SCHEMA_DUCKDB, tables, "cast({alias} as varchar)", "hash({row})")
    return list(conn.execute(sql).fetchone())


def postgres_signature(cur: Any, schema: str, tables: list[str]) -> list[str]:
    cur.execute(signature_sql(schema, tables, "{alias}::text", "hashtext({row})::bigint"))
    return list(cur.fetchone())


def main(mode: str, target: str, location: str, tables: list[str], log: Path, stop: Path) -> None:
    with log.open("a") as out:

        def write(**entry: object) -> None:
            out.write(json.dumps({"at": time.time(), "kind": mode, **entry}) + "\n")
            out.flush()

        if target == "duckdb":
            poll_duckdb(mode, Path(location), tables, stop, write)
        else:
            poll_postgres(json.loads(location), tables, stop, write)


def poll_duckdb(mode: str, path: Path, tables: list[str], stop: Path, write: Any) -> None:
    import duckdb

    held = None
    while not stop.exists():
        try:
            if not path.exists():
                write(signature=None)
            elif mode == "held":
                held = held or duckdb.connect(str(path), read_only=True)
                write(signature=duckdb_signature(held, tables))
            else:
                with duckdb.connect(str(path), read_only=True) as fresh:
                    write(signature=duckdb_signature(fresh, tables))
        except duckdb.Error as exc:
            write(kind="error", error=f"{type(exc).__name__}: {exc}")
        time.sleep(POLL_SECONDS)
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
                    write(signature=None)
                else:
                    try:
                        write(signature=postgres_signature(cur, schema, tables))
                    except psycopg2.Error as exc:
                        write(kind="error", error=f"{type(exc).__name__}: {str(exc).strip()}")
            time.sleep(POLL_SECONDS)
    finally:
        conn.close()


if __name__ == "__main__":
    mode_name, target_name, where, names, log_path, stop_path = sys.argv[1:7]
    main(mode_name, target_name, where, names.split(","), Path(log_path), Path(stop_path))
