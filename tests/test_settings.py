"""Target selection: one function decides, CLI flag beats environment, dbt and Dagster follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.settings import DEFAULT_DUCKDB_PATH, PROJECT_ROOT, resolve_target, target_env


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
