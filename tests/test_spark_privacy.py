"""`attribution forget`, `backup` and `restore` on the Spark target, on a small world and hand-made rows (no pipeline
run: the Spark end-to-end run is tests/test_spark_e2e.py).

forget: a small generated world is loaded and staged (dbt in this process) on Spark and on DuckDB, and one person
erased through the CLI on both: their clicks are gone from raw and staging, their conversions anonymised with the
revenue kept, their identifiers suppressed, every other row untouched, no scratch table or copy left, and both
engines report the same counts and leave the same rows. backup / restore: a DuckDB backup of the backup tests' hard
cases restored into Spark, backed up from Spark and restored into a new DuckDB warehouse gives the same rows and
types, value for value; a non-empty Spark warehouse refuses a restore without --force.

One JVM per process (the embedded metastore admits one): this module stops a session another module of the same
worker left and starts its own in a throwaway folder, and stops it at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from cli.privacy import forget_person
from lab.synthetic import WorldConfig, generate_world
from lab.world_files import write_world
from orchestration.dbt_in_process import InProcessDbt
from tests.conftest import make_target, module_target, run_dbt
from tests.test_backup import RAW_TABLES, load_dataset, row_counts, snapshot
from tests.test_privacy import Person, pick_person
from warehouse.backup import RestoreError, backup_raw, raw_tables, restore_raw
from warehouse.client import Warehouse, frame_checksum
from warehouse.loader import load_folder
from warehouse.privacy import ensure_warehouse_salt
from warehouse.target import PROJECT_ROOT, Target, target_env

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

WORLD = WorldConfig(persons=120, seed=23, days=2)  # the smallest with a full person
STAGED = ("stg_raw__clicks", "stg_raw__conversions", "rejected_rows", "rejected_values")
# Per table: the key, and the columns compared across engines (as text, in any order).
COMPARED = {
    "raw.clicks": ("click_id", "click_id, link_id, user_id, email, cookie_id, session_id, ip, user_agent"),
    "raw.conversions": ("conversion_id", "conversion_id, revenue, user_id, email, cookie_id, ip, user_agent, click_id"),
    "staging.stg_raw__clicks": ("click_id", "click_id, link_id, user_id, email_hash, cookie_id, ip_hash"),
    "staging.stg_raw__conversions": (
        "conversion_id",
        "conversion_id, revenue, user_id, email_hash, cookie_id, session_id, device_fingerprint, ip_hash, "
        "ip_network_hash, user_agent, direct_click_id",
    ),
    "staging.rejected_rows": ("record_key", "source_table, record_key, reason"),
    "raw.suppressions": ("identifier_hash", "identifier_type, identifier_hash"),
}


@pytest.fixture(scope="module")
def spark_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This module's own session: one another module left in this worker holds another warehouse."""
    pytest.importorskip("pyspark")
    from warehouse import spark

    spark.stop()
    yield tmp_path_factory.mktemp("spark_privacy")
    spark.stop()


def _rows(wh: Warehouse, table: str) -> list[tuple[object, ...]]:
    key, columns = COMPARED[table]
    frame = wh.query_df(f"select {columns} from {table}")
    # An empty CSV field is loaded as '' on Spark and as NULL on DuckDB (the loader's business): compared alike.
    # Figures to 1e-9: the engines compute converted revenue in different orders.
    rows = [tuple("" if pd.isna(v) else f"{v:.9f}" if isinstance(v, float) else str(v) for v in row)
            for row in frame.itertuples(index=False)]  # fmt: skip
    return sorted(rows, key=repr)


def _checksum_without(wh: Warehouse, table: str, key: str, ids: set[str]) -> str:
    frame = wh.query_df(f"select * from {table}")
    return frame_checksum(frame[~frame[key].fillna("").str.strip().isin(ids)].astype(str))


def _normal_email(value: object) -> str:
    """An email as staging matches it: lower case, +tag and Gmail dots removed."""
    local, _, domain = str(value or "").strip().lower().partition("@")
    local = local.split("+", 1)[0]
    return f"{local.replace('.', '') if domain in ('gmail.com', 'googlemail.com') else local}@{domain}"


def _carries(frame: pd.DataFrame, person: Person) -> pd.Series:
    """Rows holding one of the person's identifiers (what forget erases when no identity graph exists yet)."""
    text = frame[["user_id", "cookie_id", "email"]].fillna("").astype(str)
    return (
        (text["user_id"].str.strip() == person.user_id)
        | (text["cookie_id"].str.strip() == person.cookie)
        | (text["email"].map(_normal_email) == _normal_email(person.email))
    )


@dataclass
class Erasure:
    target: Target
    wh: Warehouse
    clicks: set[str]  # the raw click ids holding one of the person's identifiers
    conversions: set[str]  # likewise, conversion ids
    lines: list[str]
    before: dict[str, object]


def _erase(name: str, folder: Path, world_dir: Path, person: Person) -> Erasure:
    with module_target(name, folder) as target:
        wh = Warehouse(target)
        load_folder(wh, world_dir)
        ensure_warehouse_salt(wh, full_refresh=False)
        # The staged tables and what they are built from (seeds), without their tests.
        stage = ["build", "--select", *(f"+{t}" for t in STAGED), "--exclude-resource-type", "test",
                 "--exclude-resource-type", "unit_test"]  # fmt: skip
        if target.is_spark:  # dbt in this process, where the session lives
            profiles = str(PROJECT_ROOT / "dbt_project")
            cmd = ["dbt", *stage, "--project-dir", str(PROJECT_ROOT), "--profiles-dir", profiles]
            cmd += ["--target", "spark", "--target-path", str(folder / "dbt")]
            proc = InProcessDbt(cmd, env=target_env(target), cwd=PROJECT_ROOT)
            assert proc.returncode == 0, proc.stdout.getvalue().decode()[-6000:]
        else:
            run_dbt(target, *stage, target_path=folder / "dbt")
        raw = {t: wh.query_df(f"select * from raw.{t}") for t in ("clicks", "conversions")}
        clicks = set(raw["clicks"].loc[_carries(raw["clicks"], person), "click_id"].str.strip())
        conversions = set(raw["conversions"].loc[_carries(raw["conversions"], person), "conversion_id"].str.strip())
        before = {
            "revenue": float(wh.scalar("select sum(revenue) from staging.stg_raw__conversions")),
            "conversions": int(wh.scalar("select count(*) from raw.conversions")),
            "others": _others(wh, clicks, conversions),
        }
        lines = forget_person(target, f" {person.email.upper()} ", person.user_id, person.cookie)
        return Erasure(target, wh, clicks, conversions, lines, before)


def _others(wh: Warehouse, click_ids: set[str], conversion_ids: set[str]) -> dict[str, str]:
    return {
        "raw.clicks": _checksum_without(wh, "raw.clicks", "click_id", click_ids),
        "staging.stg_raw__clicks": _checksum_without(wh, "staging.stg_raw__clicks", "click_id", click_ids),
        "raw.conversions": _checksum_without(wh, "raw.conversions", "conversion_id", conversion_ids),
        "staging.stg_raw__conversions": _checksum_without(
            wh, "staging.stg_raw__conversions", "conversion_id", conversion_ids
        ),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Person]:
    work = tmp_path_factory.mktemp("spark_forget_world")
    generated = generate_world(WORLD)
    write_world(generated, work / "world")
    return work / "world", pick_person(generated)


@pytest.fixture(scope="module")
def erasures(
    spark_folder: Path, world: tuple[Path, Person], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Erasure]:
    world_dir, person = world
    duckdb_folder = tmp_path_factory.mktemp("spark_forget_duckdb")
    return {name: _erase(name, folder, world_dir, person)
            for name, folder in (("spark", spark_folder), ("duckdb", duckdb_folder))}  # fmt: skip


def test_forget_on_spark_erases_the_person_and_leaves_everyone_else(
    erasures: dict[str, Erasure], world: tuple[Path, Person]
) -> None:
    _, person = world
    spark = erasures["spark"]
    wh, clicks = spark.wh, spark.clicks
    assert set(person.click_ids) <= clicks
    report = dict(line.split(": ", 1) for line in spark.lines)
    assert report["raw.clicks"] == f"{len(clicks)} row(s) deleted"
    assert report["raw.conversions"] == f"{len(spark.conversions)} row(s) anonymised" and spark.conversions
    assert int(report["identifiers suppressed (hash only)"]) >= 3
    listed = ", ".join(f"'{c}'" for c in clicks)
    for table in ("raw.clicks", "staging.stg_raw__clicks"):
        assert int(wh.scalar(f"select count(*) from {table} where trim(click_id) in ({listed})")) == 0, table
    # Conversions stay, as anonymous revenue.
    assert int(wh.scalar("select count(*) from raw.conversions")) == spark.before["conversions"]
    assert float(wh.scalar("select sum(revenue) from staging.stg_raw__conversions")) == pytest.approx(
        spark.before["revenue"]
    )
    mine = ", ".join(f"'{c}'" for c in spark.conversions)
    raw = wh.query_df(f"select user_id, email, cookie_id, ip, user_agent, click_id from raw.conversions "
                      f"where conversion_id in ({mine})")  # fmt: skip
    assert len(raw) == len(spark.conversions) and set(raw.stack()) == {""}
    staged = wh.query_df(f"select user_id, email_hash, cookie_id, ip_hash, user_agent, direct_click_id "
                         f"from staging.stg_raw__conversions where conversion_id in ({mine})")  # fmt: skip
    assert len(staged) and staged.isna().all().all()
    kinds = set(wh.query_df("select identifier_type from raw.suppressions")["identifier_type"])
    assert {"email", "user_id", "cookie"} <= kinds
    # Every other row as it was; no scratch table or copy left behind.
    assert _others(wh, clicks, spark.conversions) == spark.before["others"]
    with wh.connect() as session:
        assert not session.catalog.databaseExists("scratch")
        leftovers = [
            t.name for db in ("raw", "staging") for t in session.catalog.listTables(db) if t.name.endswith("__copy")
        ]
    assert leftovers == []


def test_forget_on_spark_leaves_the_rows_duckdb_leaves(erasures: dict[str, Erasure]) -> None:
    spark, duckdb = erasures["spark"], erasures["duckdb"]
    assert spark.lines == duckdb.lines
    for table in COMPARED:
        assert _rows(spark.wh, table) == _rows(duckdb.wh, table), table


def test_a_duckdb_backup_restores_into_spark_and_back_value_for_value(
    erasures: dict[str, Erasure], tmp_path: Path
) -> None:
    spark = erasures["spark"].wh  # this module's session: its warehouse holds the erasure's rows
    source = Warehouse(make_target("duckdb", tmp_path / "source"))
    load_dataset(source, tmp_path)
    first = backup_raw(source, tmp_path / "from_duckdb")

    occupied = row_counts(spark)
    with pytest.raises(RestoreError, match=r"raw\.clicks \([\d,]+ rows\).*--force"):
        restore_raw(spark, tmp_path / "from_duckdb")
    assert row_counts(spark) == occupied  # refused before any write

    result = restore_raw(spark, tmp_path / "from_duckdb", force=True)
    assert result.truncated == {t: n for t, n in occupied.items() if n}
    assert result.rows == {t: e.rows for t, e in first.tables.items()}
    with spark.connect() as session:
        restored_types = {t: tuple((c.name, c.type) for c in cols) for t, cols in raw_tables(spark, session).items()}
    for table, entry in first.tables.items():
        assert restored_types[table] == tuple((c.name, c.type) for c in entry.columns), table

    second = backup_raw(spark, tmp_path / "from_spark")
    assert second.target == "spark"
    for table, entry in first.tables.items():
        assert (second.tables[table].rows, second.tables[table].columns) == (entry.rows, entry.columns), table
    assert not list((tmp_path / "from_spark").glob(".*"))  # Spark's part files are gone
    # Tables emptied by --force are backed up (empty) too.
    assert {t: e.rows for t, e in second.tables.items() if t not in first.tables} == dict.fromkeys(
        set(second.tables) - set(first.tables), 0
    )

    back = Warehouse(make_target("duckdb", tmp_path / "back"))
    restore_raw(back, tmp_path / "from_spark")
    expected = snapshot(source)
    assert {t: v for t, v in snapshot(back).items() if t in expected} == expected
    assert set(expected) >= set(RAW_TABLES)
