"""The warehouse's own PII salt: one random secret per warehouse, kept out of the repository.

Staging hashes emails, IPs and (in ``raw`` after the retention window, and in suppression entries) user ids and
cookies as SHA-256 of salt || value. A salt printed in the repository would let anyone reverse those hashes by
hashing candidate emails, so the salt lives with the data it protects: table ``raw.pii_salt`` (one row), created
with :func:`secrets.token_hex` at the first ``attribution run`` and copied by ``attribution backup`` like every raw
table. dbt reads it from there (macro ``pii_salt_literal``), so it never passes through the environment, a
command line or a file. ``ATTRIBUTION_PII_SALT``, when set, is used instead (an operator who keeps the secret in a
vault); the old development value is refused outside DuckDB.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from warehouse.client import Warehouse, qualified
from warehouse.target import Target

SALT_ENV = "ATTRIBUTION_PII_SALT"
SALT_TABLE = "pii_salt"
# The value dbt_project.yml used to default to: printed in the repository, so it protects nothing.
DEVELOPMENT_SALT = "dev-only-salt-change-me"
STAGED_TABLES = ("stg_raw__clicks", "stg_raw__conversions")


class SaltError(RuntimeError):
    """The run must not start: it would hash with a public salt or mix two hash spaces."""


def check_salt_setting(target: Target, environ: Mapping[str, str] | None = None) -> str | None:
    """The explicit salt from the environment, if any; the development value is refused outside DuckDB."""
    env = os.environ if environ is None else environ
    explicit = (env.get(SALT_ENV) or "").strip()
    if explicit == DEVELOPMENT_SALT and not target.is_duckdb:
        raise SaltError(
            f"{SALT_ENV} is the development value printed in the repository; on {target.describe()} every email "
            f"and IP hash could be reversed with it. Unset {SALT_ENV} (the warehouse then gets its own random "
            "salt, stored in raw.pii_salt) or set a secret of your own, then `attribution run --full-refresh`."
        )
    return explicit or None


def stored_salt(wh: Warehouse, conn: Any) -> str | None:
    if not wh.table_exists("raw", SALT_TABLE, conn):
        return None
    value = wh.scalar(f"select max(salt) from {qualified('raw', SALT_TABLE)}", conn)
    return str(value) if value else None


def ensure_warehouse_salt(wh: Warehouse, full_refresh: bool, environ: Mapping[str, str] | None = None) -> str | None:
    """Make sure dbt has a salt to hash with; returns a line to print when something was created.

    A warehouse staged before it had a salt of its own holds hashes made with another one (the old default):
    hashing new rows with a new salt would split every person in two, so that is refused unless this run
    rebuilds staging from raw (``full_refresh``).
    """
    if check_salt_setting(wh.target, environ) is not None:
        return None
    with wh.connect() as conn:
        if stored_salt(wh, conn) is not None:
            return None
        staged = any(wh.table_exists("staging", t, conn) for t in STAGED_TABLES)
        if staged and not full_refresh:
            raise SaltError(
                f"{wh.target.describe()} was staged before it had a PII salt of its own (its hashes use the old "
                f"development default or a former {SALT_ENV}). Run `attribution run --full-refresh` once: it "
                "creates the warehouse's own random salt in raw.pii_salt and re-hashes everything with it."
            )
        wh.ensure_schemas(conn)
        # Spark has no type text and no NOT NULL on a plain Parquet table (timestamp is translated by the client).
        columns = (
            "(salt string, created_at timestamp) using parquet"
            if wh.target.is_spark
            else "(salt text not null, created_at timestamp with time zone not null)"
        )
        wh.execute(f"create table if not exists {qualified('raw', SALT_TABLE)} {columns}", conn)
        wh.execute(
            f"insert into {qualified('raw', SALT_TABLE)} (salt, created_at) "
            f"values ('{secrets.token_hex(32)}', current_timestamp)",
            conn,
        )
    return f"created this warehouse's own PII salt (raw.pii_salt on {wh.target.describe()}; backups keep it)"
