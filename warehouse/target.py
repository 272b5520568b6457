"""Target selection: the one place that decides which warehouse everything talks to.

The CLI, dbt (through ``dbt_project/profiles.yml``, which only reads ``env_var()``) and Dagster all call
``resolve_target``; ``export_target`` writes the decision into the environment so that dbt subprocesses and
Dagster resources started later follow the same choice.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TargetName = Literal["duckdb", "postgres", "spark"]
TARGETS: tuple[TargetName, ...] = ("duckdb", "postgres", "spark")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DUCKDB_PATH = DATA_DIR / "warehouse.duckdb"
DEFAULT_DUCKDB_MEMORY_LIMIT = "2GB"
DEFAULT_SPARK_DIR = DATA_DIR / "spark"
# Two local cores: Spark's own default (every core) starves the dbt and Python work sharing the machine.
DEFAULT_SPARK_MASTER = "local[2]"
# The driver's heap. At local[2] every task runs in it too; Spark's default of 1 GB failed the demo world, where a
# small table broadcast into each branch of int_match_candidates' union outgrew it.
DEFAULT_SPARK_DRIVER_MEMORY = "4g"
# PostgreSQL's per-operation memory for the warehouse's own sessions (dbt models and Python assets); the server
# default of 4MB splits the hash tables of 1M-row joins into batches written to temporary files.
DEFAULT_PG_WORK_MEM = "256MB"
_DUCKDB_SIZE = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
_PG_SIZE = re.compile(r"\d+(kB|MB|GB|TB)")  # PostgreSQL's memory units are case-sensitive whole numbers
# The schemas BI tools and people query; dbt's generate_schema_name macro keeps these names verbatim.
SCHEMAS = ("raw", "staging", "intermediate", "marts")
# PostgreSQL schema holding the published marts BI reads (dbt_project/macros/publish.sql): a copy of `marts` swapped
# in whole at the end of every run, so readers never see a half-rebuilt set of reports.
PUBLISHED_SCHEMA = "marts_published"


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    work_mem: str = DEFAULT_PG_WORK_MEM

    def dsn_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            # Dates of partitions and reports are UTC dates; never depend on the server's zone.
            # No JIT: on the dbt models compiling cost 3-11 s per statement, more than it saved
            # (dbt_project/macros/planner.sql); the assets' statements over the same tables are no different.
            "options": f"-c TimeZone=UTC -c work_mem={self.work_mem} -c jit=off",
        }
        if self.password:
            kwargs["password"] = self.password
        return kwargs


@dataclass(frozen=True)
class SparkSettings:
    """A Spark session's home: tables are Parquet folders under ``warehouse_dir``, their catalogue an embedded Derby
    metastore under ``folder`` (one JVM at a time). A cluster replaces both through ``spark-defaults.conf``
    (``spark.sql.catalogImplementation`` / ``hive.metastore.uris``, a shared ``spark.sql.warehouse.dir``)."""

    folder: Path
    master: str = DEFAULT_SPARK_MASTER
    driver_memory: str = DEFAULT_SPARK_DRIVER_MEMORY

    @property
    def warehouse_dir(self) -> Path:
        return self.folder / "warehouse"

    @property
    def metastore_url(self) -> str:
        return f"jdbc:derby:;databaseName={self.folder / 'metastore_db'};create=true"

    def conf(self) -> dict[str, str]:
        """The session's settings; dbt's profile (``dbt_project/profiles.yml``) builds the same from ``target_env``."""
        return {
            "spark.master": self.master,
            "spark.driver.memory": self.driver_memory,
            "spark.sql.warehouse.dir": str(self.warehouse_dir),
            "spark.hadoop.javax.jdo.option.ConnectionURL": self.metastore_url,
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={self.folder}",
            # The console progress bar interleaves with dbt's JSON log lines, which dagster-dbt parses.
            "spark.ui.showConsoleProgress": "false",
            "spark.ui.enabled": "false",
            # Dates of partitions and reports are UTC dates; never depend on the machine's zone.
            "spark.sql.session.timeZone": "UTC",
            # Incremental models overwrite the partitions they rebuild, never the whole table.
            "spark.sql.sources.partitionOverwriteMode": "dynamic",
            # A local run's shuffles are small: Spark's default of 200 partitions is 200 tiny tasks per stage.
            "spark.sql.shuffle.partitions": "4",
        }


@dataclass(frozen=True)
class Target:
    name: TargetName
    duckdb_path: Path
    postgres: PostgresSettings
    # DuckDB's buffer pool defaults to 80% of RAM; a bound keeps the whole run (engine + pandas) within budget.
    # Joins and sorts beyond it spill to disk instead of failing.
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    spark: SparkSettings = SparkSettings(DEFAULT_SPARK_DIR)

    @property
    def is_duckdb(self) -> bool:
        return self.name == "duckdb"

    @property
    def is_spark(self) -> bool:
        return self.name == "spark"

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgres"

    @property
    def published_duckdb_path(self) -> Path:
        """The DuckDB file BI opens (read-only): a snapshot of the marts beside the warehouse file, replaced
        atomically at the end of every run (``warehouse.duckdb`` -> ``warehouse.marts.duckdb``)."""
        return self.duckdb_path.with_name(f"{self.duckdb_path.stem}.marts{self.duckdb_path.suffix or '.duckdb'}")

    def describe_published(self) -> str:
        """Where BI tools read the published marts."""
        if self.is_duckdb:
            return f"{self.published_duckdb_path} (open read-only; schema marts)"
        if self.is_spark:
            return f"database {PUBLISHED_SCHEMA} in the Spark warehouse {self.spark.folder}"
        return f"schema {PUBLISHED_SCHEMA} of database {self.postgres.dbname} (granted to the read-only BI role)"

    def describe(self) -> str:
        if self.is_duckdb:
            return f"duckdb ({self.duckdb_path})"
        if self.is_spark:
            return f"spark ({self.spark.master}, {self.spark.warehouse_dir})"
        pg = self.postgres
        return f"postgres ({pg.user}@{pg.host}:{pg.port}/{pg.dbname})"


def _default_pg_user() -> str:
    # libpq's own default: the operating-system user name.
    return getpass.getuser()


def resolve_target(cli_target: str | None = None, environ: dict[str, str] | None = None) -> Target:
    """Decide the target from ``--target`` (wins) or ``ATTRIBUTION_TARGET`` (default ``duckdb``)."""
    env = os.environ if environ is None else environ
    name = (cli_target or env.get("ATTRIBUTION_TARGET") or "duckdb").strip().lower()
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}: ATTRIBUTION_TARGET / --target must be one of {TARGETS}")
    duckdb_path = Path(env.get("ATTRIBUTION_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH)
    if not duckdb_path.is_absolute():
        duckdb_path = (PROJECT_ROOT / duckdb_path).resolve()
    user = env.get("PGUSER") or _default_pg_user()
    postgres = PostgresSettings(
        host=env.get("PGHOST") or "127.0.0.1",
        port=int(env.get("PGPORT") or 5432),
        user=user,
        password=env.get("PGPASSWORD") or "",
        dbname=env.get("PGDATABASE") or user,
        work_mem=_size(env, "ATTRIBUTION_PG_WORK_MEM", DEFAULT_PG_WORK_MEM, _PG_SIZE),
    )
    memory_limit = _size(env, "ATTRIBUTION_DUCKDB_MEMORY_LIMIT", DEFAULT_DUCKDB_MEMORY_LIMIT, _DUCKDB_SIZE)
    spark_dir = Path(env.get("ATTRIBUTION_SPARK_DIR") or DEFAULT_SPARK_DIR)
    if not spark_dir.is_absolute():
        spark_dir = (PROJECT_ROOT / spark_dir).resolve()
    spark = SparkSettings(
        folder=spark_dir,
        master=(env.get("ATTRIBUTION_SPARK_MASTER") or DEFAULT_SPARK_MASTER).strip(),
        driver_memory=(env.get("ATTRIBUTION_SPARK_DRIVER_MEMORY") or DEFAULT_SPARK_DRIVER_MEMORY).strip(),
    )
    return Target(
        name=name,  # type: ignore[arg-type]
        duckdb_path=duckdb_path,
        postgres=postgres,
        duckdb_memory_limit=memory_limit,
        spark=spark,
    )


def _size(env: Mapping[str, str], name: str, default: str, pattern: re.Pattern[str]) -> str:
    value = (env.get(name) or default).strip()
    if not pattern.fullmatch(value):
        raise ValueError(f"{name} must be a size like '2GB' or '512MB', got {value!r}")
    return value


def target_env(target: Target) -> dict[str, str]:
    """Environment variables that make dbt's profile and Dagster's resources follow ``target``."""
    pg = target.postgres
    return {
        "ATTRIBUTION_TARGET": target.name,
        "ATTRIBUTION_DUCKDB_PATH": str(target.duckdb_path),
        "ATTRIBUTION_DUCKDB_MEMORY_LIMIT": target.duckdb_memory_limit,
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "PGUSER": pg.user,
        "PGPASSWORD": pg.password,
        "PGDATABASE": pg.dbname,
        "ATTRIBUTION_PG_WORK_MEM": pg.work_mem,
        "ATTRIBUTION_SPARK_DIR": str(target.spark.folder),
        "ATTRIBUTION_SPARK_MASTER": target.spark.master,
        "ATTRIBUTION_SPARK_DRIVER_MEMORY": target.spark.driver_memory,
        # Spark's Python workers (the per-group steps) run this interpreter, whoever creates the session (dbt or
        # the warehouse client), not whatever `python3` is first on PATH.
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        # dbt-postgres has no session options; libpq reads PGTZ so dbt's sessions run in UTC too.
        "PGTZ": "UTC",
    }


def export_target(target: Target) -> None:
    os.environ.update(target_env(target))
    if target.is_duckdb:
        target.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    if target.is_spark:
        target.spark.folder.mkdir(parents=True, exist_ok=True)
