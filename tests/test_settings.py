"""Target selection: one function decides, CLI flag beats environment, dbt and Dagster follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.target import DEFAULT_DUCKDB_PATH, PROJECT_ROOT, resolve_target, target_env


def test_default_is_embedded_duckdb() -> None:
    t = resolve_target(environ={})
    assert t.name == "duckdb" and t.duckdb_path == DEFAULT_DUCKDB_PATH


def test_cli_flag_beats_environment() -> None:
    assert resolve_target("postgres", environ={"ATTRIBUTION_TARGET": "duckdb"}).name == "postgres"
    assert resolve_target(None, environ={"ATTRIBUTION_TARGET": "postgres"}).name == "postgres"


def test_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="snowflake"):
        resolve_target("snowflake", environ={})


def test_postgres_reads_libpq_variables() -> None:
    env = {"PGHOST": "db", "PGPORT": "6543", "PGUSER": "me", "PGPASSWORD": "s3", "PGDATABASE": "wh"}
    pg = resolve_target("postgres", environ=env).postgres
    assert (pg.host, pg.port, pg.user, pg.password, pg.dbname) == ("db", 6543, "me", "s3", "wh")
    assert resolve_target("postgres", environ={"PGUSER": "me"}).postgres.host == "127.0.0.1"


def test_relative_duckdb_path_is_anchored_at_the_project() -> None:
    t = resolve_target(environ={"ATTRIBUTION_DUCKDB_PATH": "data/other.duckdb"})
    assert t.duckdb_path == PROJECT_ROOT / "data" / "other.duckdb"


def test_exported_environment_drives_dbt_profile() -> None:
    t = resolve_target("duckdb", environ={"ATTRIBUTION_DUCKDB_PATH": "/tmp/x.duckdb"})
    env = target_env(t)
    assert env["ATTRIBUTION_TARGET"] == "duckdb" and env["ATTRIBUTION_DUCKDB_PATH"] == "/tmp/x.duckdb"
    profile = (PROJECT_ROOT / "dbt_project" / "profiles.yml").read_text()
    for var in ("ATTRIBUTION_TARGET", "ATTRIBUTION_DUCKDB_PATH", "PGHOST", "PGPASSWORD", "PGDATABASE"):
        assert f"env_var('{var}'" in profile
    assert Path(env["ATTRIBUTION_DUCKDB_PATH"]).is_absolute()


def test_postgres_work_mem_reaches_sessions_and_dbt() -> None:
    default = resolve_target("postgres", environ={}).postgres
    assert "-c work_mem=256MB -c jit=off" in str(default.dsn_kwargs()["options"])
    t = resolve_target("postgres", environ={"ATTRIBUTION_PG_WORK_MEM": "1GB"})
    assert "-c work_mem=1GB" in str(t.postgres.dsn_kwargs()["options"])
    assert target_env(t)["ATTRIBUTION_PG_WORK_MEM"] == "1GB"  # dbt's var pg_work_mem reads it
    assert "env_var('ATTRIBUTION_PG_WORK_MEM'" in (PROJECT_ROOT / "dbt_project.yml").read_text()


@pytest.mark.parametrize("bad", ["256mb", "256 MB", "1.5GB", "lots"])
def test_postgres_work_mem_is_validated_before_any_connection(bad: str) -> None:
    # PostgreSQL's units are case-sensitive whole numbers: a typo would otherwise fail every connection later.
    with pytest.raises(ValueError, match="ATTRIBUTION_PG_WORK_MEM"):
        resolve_target("postgres", environ={"ATTRIBUTION_PG_WORK_MEM": bad})
