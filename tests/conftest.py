"""Shared fixtures: throwaway warehouses on both targets, and generated worlds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from warehouse.client import Warehouse, frame_checksum
from warehouse.target import PROJECT_ROOT, PUBLISHED_SCHEMA, Target, resolve_target, target_env

REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
# Every test warehouse hashes PII with this fixed, public salt, so hashes and the identity ids derived from them
# (and so the recorded mart checksums) are reproducible; tests/test_privacy.py unsets it to exercise the
# warehouse's own random salt.
TEST_PII_SALT = "test-only-salt-not-a-secret"
os.environ.setdefault("ATTRIBUTION_PII_SALT", TEST_PII_SALT)


def _pg_admin_kwargs() -> dict[str, object]:
    return {
        "host": os.environ.get("PGHOST") or "127.0.0.1",
        "port": int(os.environ.get("PGPORT") or 5432),
        "user": os.environ.get("PGUSER") or "root",
        "password": os.environ.get("PGPASSWORD") or None,
        "dbname": "postgres",
        "connect_timeout": 5,
    }


def postgres_unavailable_reason() -> str | None:
    try:
        import psycopg2

        psycopg2.connect(**_pg_admin_kwargs()).close()
    except Exception as exc:  # any failure to connect means "no server for these tests"
        return f"PostgreSQL not reachable at {_pg_admin_kwargs()['host']}:{_pg_admin_kwargs()['port']}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> dict[str, object]:
    reason = postgres_unavailable_reason()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    return _pg_admin_kwargs()


def create_pg_database(admin: dict[str, object], prefix: str = "attr_test") -> str:
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(**admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'create database "{name}"')
    conn.close()
    return name


def drop_pg_database(admin: dict[str, object], name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(**admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')
    conn.close()


@pytest.fixture
def pg_database(postgres_server: dict[str, object]) -> Iterator[str]:
    """A throwaway PostgreSQL database, dropped afterwards."""
    name = create_pg_database(postgres_server)
    try:
        yield name
    finally:
        drop_pg_database(postgres_server, name)


def make_target(name: str, tmp_path: Path, pg_dbname: str | None = None) -> Target:
    env = {"ATTRIBUTION_TARGET": name, "ATTRIBUTION_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb")}
    if name == "spark":
        env.update(ATTRIBUTION_SPARK_DIR=str(tmp_path / "spark"))
    if name == "postgres":
        admin = _pg_admin_kwargs()
        env.update(
            PGHOST=str(admin["host"]),
            PGPORT=str(admin["port"]),
            PGUSER=str(admin["user"]),
            PGPASSWORD=str(admin["password"] or ""),
            PGDATABASE=str(pg_dbname),
        )
    return resolve_target(environ=env)


@contextmanager
def module_target(name: str, folder: Path, prefix: str = "attr_mod") -> Iterator[Target]:
    """A throwaway warehouse for a module-scoped fixture, with the environment following it (dbt and Dagster read
    it) until the block ends. PostgreSQL is skipped without a server, unless REQUIRE_POSTGRES=1."""
    dbname = None
    if name == "postgres":
        reason = postgres_unavailable_reason()
        if reason:
            if REQUIRE_POSTGRES:
                pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}")
            pytest.skip(reason)
        dbname = create_pg_database(_pg_admin_kwargs(), prefix=prefix)
    t = make_target(name, folder, dbname)
    (folder / "dagster_home").mkdir(parents=True, exist_ok=True)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in target_env(t).items():
                mp.setenv(key, value)
            mp.setenv("DAGSTER_HOME", str(folder / "dagster_home"))
            yield t
    finally:
        if dbname:
            drop_pg_database(_pg_admin_kwargs(), dbname)


@pytest.fixture(params=["duckdb", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """A throwaway warehouse on each target; the environment follows it (dbt and Dagster read it)."""
    dbname = None
    if request.param == "postgres":
        admin = request.getfixturevalue("postgres_server")
        dbname = create_pg_database(admin)
    t = make_target(request.param, tmp_path, dbname)
    for key, value in target_env(t).items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    try:
        yield t
    finally:
        if dbname:
            drop_pg_database(request.getfixturevalue("postgres_server"), dbname)


def run_dbt(target: Target, *args: str, target_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run dbt against ``target`` in a subprocess and fail with dbt's output when it fails."""
    env = {**os.environ, **target_env(target)}
    dbt = Path(sys.executable).with_name("dbt")
    cmd = [
        str(dbt),
        *args,
        "--project-dir",
        str(PROJECT_ROOT),
        "--profiles-dir",
        str(PROJECT_ROOT / "dbt_project"),
    ]
    cmd += [
        "--target",
        target.name,
        "--target-path",
        str(target_path or PROJECT_ROOT / "target" / f"test_{target.name}"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if proc.returncode != 0:
        pytest.fail(f"dbt {' '.join(args)} failed on {target.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
    return proc


# --------------------------------------------------------------------------------------- pipeline helpers ---
MARTS = (
    "fct_attribution_credits",
    "fct_conversion_attribution",
    "dim_identities",
    "dim_links",
    "match_signal_weights",
    "rpt_link_daily",
    "rpt_creator_performance",
    "rpt_campaign_performance",
    "rpt_channel_attribution",
    "rpt_attribution_quality",
    "time_spine_daily",
)


def mart_checksums(wh: Warehouse) -> dict[str, str]:
    with wh.connect() as conn:
        return {m: frame_checksum(wh.query_df(f"select * from marts.{m}", conn)) for m in MARTS}


def published_checksums(target: Target) -> dict[str, str]:
    """:func:`mart_checksums` of the published snapshot BI reads."""
    if target.is_duckdb:
        import duckdb

        with duckdb.connect(str(target.published_duckdb_path), read_only=True) as conn:
            return {m: frame_checksum(conn.execute(f"select * from marts.{m}").df()) for m in MARTS}
    wh = Warehouse(target)
    with wh.connect() as conn:
        return {m: frame_checksum(wh.query_df(f"select * from {PUBLISHED_SCHEMA}.{m}", conn)) for m in MARTS}


def rounded_checksum(df: pd.DataFrame, digits: int = 9) -> str:
    """:func:`frame_checksum` of ``df`` with floats rounded to ``digits`` decimals: the last bits of a float sum
    depend on the order an engine adds in, which a refactoring may change without changing any figure."""
    out = df.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            # +0.0 turns -0.0 into 0.0, which str() would otherwise keep apart.
            out[column] = out[column].round(digits) + 0.0
    return frame_checksum(out)


def mart_row_checksums(wh: Warehouse) -> dict[str, str]:
    """Row checksums of every mart, floats rounded: what a refactoring must leave unchanged."""
    with wh.connect() as conn:
        return {m: rounded_checksum(wh.query_df(f"select * from marts.{m}", conn)) for m in MARTS}


def assert_run_ok(result: dg.ExecuteInProcessResult) -> None:
    failures = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert result.success, f"run failed: {failures}"
    failed_checks = [
        f"{c.asset_key.to_user_string()}:{c.check_name}"
        for c in result.get_asset_check_evaluations()
        if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert not failed_checks, f"failed checks: {failed_checks}"


# ------------------------------------------------------------------------------------- a served webserver ---
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None, attempts: int = 3) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                payload = json.loads(response.read())
            break
        except urllib.error.HTTPError as exc:
            # The dev instance keeps its storage in SQLite, shared by webserver and daemon: on a loaded machine
            # a write can hit "database is locked" and surface as a 500. Retry those; anything else fails now.
            detail = exc.read().decode(errors="replace")[:4000]
            if exc.code < 500 or attempt == attempts:
                raise AssertionError(f"GraphQL {exc.code} after {attempt} attempt(s): {detail}") from exc
            time.sleep(3)
    assert "errors" not in payload, payload
    return payload["data"]


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM a webserver and its children; on a loaded machine a daemon may linger, so SIGKILL after 60 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@contextmanager
def serving(
    argv: Callable[[int], list[str]], env: dict[str, str], log_path: Path, timeout: float = 180
) -> Iterator[int]:
    """Start ``argv(port)`` (a Dagster webserver) from the project root and yield its port once it answers."""
    port = free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            argv(port), cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                    break
                except OSError:
                    assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                    assert server.poll() is None, log_path.read_text()[-3000:]
                    time.sleep(1)
            yield port
        finally:
            stop_process_group(server)


# ------------------------------------------------------------------------------------- xdist scheduling ---
# `--dist loadscope` hands out one scope of tests at a time and a worker runs a scope's tests in turn, so module-scoped
# fixtures are built once per scope. The scope here (pytest_xdist_make_scheduler) is the test's module or, for the
# modules below, its module and target: their fixtures are parametrized by target and independent, so the two
# targets' scenarios can run on both workers at once. Scopes are handed out in collection order
# (`--no-loadscope-reorder`), which pytest_collection_modifyitems makes longest first (LONGEST_FIRST, by the
# --durations of a full run on 2 cores; scopes not listed take seconds): the Spark run (one JVM, the longest)
# starts at once, and the two workers finish together. A Spark module is one scope, so its tests share one JVM in
# one worker.
SPLIT_BY_TARGET = (
    "tests/test_reliability.py",
    "tests/test_privacy.py",
    "tests/test_recovery.py",
    "tests/test_marts_dbt.py",
    "tests/test_staging_dbt.py",
    "tests/test_backup.py",
)
LONGEST_FIRST = (
    "tests/test_spark_e2e.py",
    "tests/test_reliability.py:duckdb",
    "tests/test_reliability.py:postgres",
    "tests/test_spark_target.py",
    "tests/test_privacy.py:postgres",
    "tests/test_privacy.py:duckdb",
    "tests/test_recovery.py:postgres",
    "tests/test_recovery.py:duckdb",
    "tests/test_entry_points.py",
    "tests/test_marts_dbt.py:postgres",
    "tests/test_marts_dbt.py:duckdb",
    "tests/test_backup.py:postgres",
    "tests/test_backup.py:duckdb",
)
TARGET_NAMES = ("duckdb", "postgres", "spark")


def xdist_scope(nodeid: str) -> str:
    """The test's module, or for SPLIT_BY_TARGET its module and the first target named in its parameters."""
    module, _, name = nodeid.partition("::")
    if module in SPLIT_BY_TARGET and name.endswith("]") and "[" in name:
        for part in name[name.index("[") + 1 : -1].split("-"):
            if part in TARGET_NAMES:
                return f"{module}:{part}"
    return module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TargetScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return TargetScopeScheduling(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Once every plugin has ordered the tests (pytest groups them by fixture parameter): the scopes longest first,
    the tests of each kept in order."""
    rank = {scope: i for i, scope in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(xdist_scope(item.nodeid), len(rank)))
