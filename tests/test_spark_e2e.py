"""The Spark target end to end: the reliability scenario's world, run on DuckDB and on Spark, gives the same marts
(row checksums, floats rounded to 1e-9); a click that arrived late, picked up by the hourly schedule's next run,
moves its conversion's credit and leaves the same marts on both; then `attribution forget` erases one person from
both warehouses as the runs left them, and the two engines erase the same rows. One module, one JVM.

On Spark the run's last step publishes the marts (database marts_published, equal to the marts). After the
erasure, raw retention at a zero-day window (dbt in this process: the embedded metastore admits one JVM) leaves raw
with hashes only and staging as it was. Last, backup / restore: a DuckDB backup of the backup tests' hard cases
restored into the Spark warehouse, backed up from Spark and restored into a new DuckDB warehouse gives the same
rows and types, value for value; the non-empty Spark warehouse refuses a restore without --force."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from cli.privacy import forget_person
from cli.runner import project_instance, run_job
from orchestration.assets.keys import PUBLISHED_MARTS
from orchestration.dbt_in_process import InProcessDbt
from orchestration.schedules import hourly_refresh_schedule
from orchestration.settings import dbt_var
from tests.conftest import MARTS, assert_run_ok, make_target, mart_row_checksums, module_target, rounded_checksum
from tests.test_backup import RAW_TABLES, load_dataset, row_counts, snapshot
from tests.test_privacy import Person, pick_person
from tests.test_reliability import WORLD_DAYS, WORLD_NOW, LateClick, late_credits, write_worlds
from tests.test_synthetic import normalise_email
from warehouse.backup import RestoreError, backup_raw, raw_tables, restore_raw
from warehouse.client import Warehouse, frame_checksum
from warehouse.loader import load_folder
from warehouse.target import PROJECT_ROOT, PUBLISHED_SCHEMA, Target, target_env

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

STAGED = ("stg_raw__clicks", "stg_raw__conversions", "stg_raw__links")
RETAINED = ("email", "ip", "user_id", "cookie_id")
# Per table: the key, and the columns compared across engines after the erasure (as text, in any order).
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
PERSONAL = "user_id, email, cookie_id, ip, user_agent, click_id"


def _staging_checksums(wh: Warehouse) -> dict[str, str]:
    with wh.connect() as conn:
        return {t: frame_checksum(wh.query_df(f"select * from staging.{t} order by 1", conn)) for t in STAGED}


def _dbt_in_process(target: Target, work: Path, *args: str) -> None:
    """dbt in this process, where the Spark session lives (a second JVM could not open the metastore)."""
    cmd = ["dbt", *args, "--project-dir", str(PROJECT_ROOT), "--profiles-dir", str(PROJECT_ROOT / "dbt_project")]
    cmd += ["--target", target.name, "--target-path", str(work / "dbt_retention")]
    proc = InProcessDbt(cmd, env=target_env(target), cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stdout.getvalue().decode()[-6000:]


def _retention(target: Target, wh: Warehouse, work: Path, mp: pytest.MonkeyPatch) -> dict[str, object]:
    """Raw retention at a zero-day window: what it left in raw, in staging and in its summary."""
    before = _staging_checksums(wh)
    mp.setenv("ATTRIBUTION_RAW_RETENTION_DAYS", "0")
    _dbt_in_process(target, work, "build", "--select", "raw_retention")
    junk = ", ".join(f"'{v}'" for v in ["", *dbt_var("junk_identifier_values")])
    with wh.connect() as conn:
        clear = {
            f"{table}.{column}": int(
                wh.scalar(
                    f"select count(*) from raw.{table} where {column} not like 'sha256:%' "
                    f"and lower(trim({column})) not in ({junk})",
                    conn,
                )
            )
            for table in ("clicks", "conversions")
            for column in RETAINED
        }
        summary = wh.query_df("select * from staging.raw_retention", conn)
    return {"staging_unchanged": _staging_checksums(wh) == before, "clear": clear, "summary": summary}


# ----------------------------------------------------------------------------------------------------- forget ---
def _rows(wh: Warehouse, table: str) -> list[tuple[object, ...]]:
    _, columns = COMPARED[table]
    frame = wh.query_df(f"select {columns} from {table}")
    # An empty CSV field is loaded as '' on Spark and as NULL on DuckDB (the loader's business): compared alike.
    # Figures to 1e-9: the engines compute converted revenue in different orders.
    rows = [tuple("" if pd.isna(v) else f"{v:.9f}" if isinstance(v, float) else str(v) for v in row)
            for row in frame.itertuples(index=False)]  # fmt: skip
    return sorted(rows, key=repr)


def _carrying(frame: pd.DataFrame, key: str, person: Person) -> set[str]:
    """Ids of the rows holding one of the person's identifiers: erased whatever the identity graph says."""
    text = frame[["user_id", "cookie_id", "email"]].fillna("").astype(str)
    holds = (
        (text["user_id"].str.strip() == person.user_id)
        | (text["cookie_id"].str.strip() == person.cookie)
        | (normalise_email(text["email"]) == normalise_email(pd.Series([person.email]))[0])
    )
    return set(frame.loc[holds, key].str.strip())


# The rows an erasure deletes or anonymises, by table: the key and whether the table's rows are clicks.
ERASED_IN = {
    "raw.clicks": ("click_id", True),
    "staging.stg_raw__clicks": ("click_id", True),
    "intermediate.int_clicks": ("click_id", True),
    "raw.conversions": ("conversion_id", False),
    "staging.stg_raw__conversions": ("conversion_id", False),
}


def _erasable(wh: Warehouse) -> dict[str, pd.DataFrame]:
    return {table: wh.query_df(f"select * from {table}") for table in ERASED_IN}


def _others(frames: dict[str, pd.DataFrame], clicks: set[str], conversions: set[str]) -> dict[str, str]:
    """Checksums of every row the erasure must leave as it was."""
    out = {}
    for table, (key, is_click) in ERASED_IN.items():
        frame = frames[table]
        spared = ~frame[key].fillna("").str.strip().isin(clicks if is_click else conversions)
        out[table] = frame_checksum(frame[spared].astype(str))
    return out


def _without_identifiers(conversions: pd.DataFrame) -> set[str]:
    blank = conversions.set_index(conversions["conversion_id"].str.strip())[PERSONAL.split(", ")]
    blank = blank.fillna("").astype(str).apply(lambda column: column.str.strip())
    return set(blank.index[(blank == "").all(axis=1)])


@dataclass
class Erasure:
    lines: list[str]
    carrying: tuple[set[str], set[str]]  # click and conversion ids holding the person's identifiers
    deleted: set[str]  # raw click ids gone
    anonymised: set[str]  # raw conversion ids whose identifiers were blanked
    revenue: tuple[float, float]  # staged conversion revenue before, after
    others: tuple[dict[str, str], dict[str, str]]  # every other row, before and after
    rows: dict[str, list[tuple[object, ...]]]  # COMPARED tables after
    leftovers: list[str]  # scratch tables or copies left behind


def _forget(target: Target, wh: Warehouse, person: Person) -> Erasure:
    """`attribution forget` on the warehouse the pipeline left: the person's identities are known."""
    before = _erasable(wh)
    lines = forget_person(target, f" {person.email.upper()} ", person.user_id, person.cookie)
    after = _erasable(wh)
    deleted = set(before["raw.clicks"]["click_id"].str.strip()) - set(after["raw.clicks"]["click_id"].str.strip())
    anonymised = _without_identifiers(after["raw.conversions"]) - _without_identifiers(before["raw.conversions"])
    leftovers: list[str] = []
    if target.is_spark:
        with wh.connect() as session:
            leftovers = ["scratch"] if session.catalog.databaseExists("scratch") else []
            leftovers += [t.name for db in ("raw", "staging") for t in session.catalog.listTables(db)
                          if t.name.endswith("__copy")]  # fmt: skip
    revenue = tuple(float(f["staging.stg_raw__conversions"]["revenue"].sum()) for f in (before, after))
    return Erasure(
        lines=lines,
        carrying=(
            _carrying(before["raw.clicks"], "click_id", person),
            _carrying(before["raw.conversions"], "conversion_id", person),
        ),
        deleted=deleted,
        anonymised=anonymised,
        revenue=revenue,
        others=(_others(before, deleted, anonymised), _others(after, deleted, anonymised)),
        rows={table: _rows(wh, table) for table in COMPARED},
        leftovers=leftovers,
    )


# ---------------------------------------------------------------------------------------------------- the run ---
def _run(name: str, world: tuple[Path, Path, LateClick], work: Path, person: Person) -> dict[str, object]:
    world_dir, late_dir, late = world
    with module_target(name, work) as target, pytest.MonkeyPatch.context() as mp:
        wh = Warehouse(target)
        load_folder(wh, world_dir)
        instance = project_instance(target, work / "dagster_instance")
        result = run_job(target, instance=instance, log_level="WARNING")
        assert_run_ok(result)
        out: dict[str, object] = {
            "wh": wh,
            "marts": mart_row_checksums(wh),
            "materialized": {e.asset_key for e in result.get_asset_materialization_events()},
        }
        if target.is_spark:
            with wh.connect() as conn:
                out["published"] = {
                    m: rounded_checksum(wh.query_df(f"select * from {PUBLISHED_SCHEMA}.{m}", conn)) for m in MARTS
                }
        # A click that arrived late, picked up by the hourly schedule's next run over the days it changes.
        out["late_before"] = late_credits(wh, late)
        load_folder(wh, late_dir)
        tick = dg.build_schedule_context(instance=instance, scheduled_execution_time=WORLD_NOW)
        request = hourly_refresh_schedule(tick)
        assert isinstance(request, dg.RunRequest)
        hourly = run_job(target, "hourly_refresh", tags=request.tags, instance=instance, log_level="WARNING")
        assert_run_ok(hourly)
        partitions = {e.partition for e in hourly.get_asset_materialization_events()} - {None}
        out["hourly"] = {"tags": dict(request.tags), "partitions": sorted(partitions), "marts": mart_row_checksums(wh)}
        out["late"] = (late.click_id, late_credits(wh, late))
        out["erasure"] = _forget(target, wh, person)
        if target.is_spark:
            out["retention"] = _retention(target, wh, work, mp)
        return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, object]]]:
    pytest.importorskip("pyspark")
    work = tmp_path_factory.mktemp("spark_e2e")
    world = write_worlds(work)
    person = pick_person(
        {t: pd.read_csv(world[0] / f"{t}.csv", dtype=str, keep_default_na=False) for t in ("clicks", "conversions")}
    )
    yield {name: _run(name, world, work / name, person) for name in ("spark", "duckdb")}


def test_spark_marts_equal_duckdb_marts(runs: dict[str, dict[str, object]]) -> None:
    duckdb, spark = runs["duckdb"]["marts"], runs["spark"]["marts"]
    changed = {m: (duckdb[m], spark.get(m)) for m in duckdb if spark.get(m) != duckdb[m]}
    assert not changed, f"Spark marts differ from DuckDB's (duckdb, spark): {changed}"


def test_spark_run_publishes_the_marts(runs: dict[str, dict[str, object]]) -> None:
    spark = runs["spark"]
    assert PUBLISHED_MARTS in spark["materialized"]
    assert spark["published"] == spark["marts"]


def test_the_hourly_job_on_spark_moves_the_late_click_credit_as_on_duckdb(
    runs: dict[str, dict[str, object]],
) -> None:
    spark, duckdb = runs["spark"]["hourly"], runs["duckdb"]["hourly"]
    window = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
    assert [spark["tags"][k] for k in window] == [duckdb["tags"][k] for k in window]
    assert spark["partitions"] == duckdb["partitions"]
    assert 0 < len(spark["partitions"]) < WORLD_DAYS  # the days the late click changes, not every day
    changed = {m: (c, spark["marts"].get(m)) for m, c in duckdb["marts"].items() if spark["marts"].get(m) != c}
    assert not changed, f"after the hourly run, Spark marts differ from DuckDB's (duckdb, spark): {changed}"
    assert spark["marts"] != runs["spark"]["marts"]
    before, (late, after) = runs["spark"]["late_before"], runs["spark"]["late"]
    assert late not in set(before["click_id"]) and set(after["candidate_click_id"]) == {late}
    last_touch = after[after["model"] == "last_touch"].set_index("click_id")["credit_share"]
    assert last_touch.get(late, 0) > 0.5, last_touch


def test_forget_after_a_run_on_spark_erases_the_person_and_leaves_everyone_else(
    runs: dict[str, dict[str, object]],
) -> None:
    erasure: Erasure = runs["spark"]["erasure"]
    carrying_clicks, carrying_conversions = erasure.carrying
    # The identity graph may add rows that carry none of the given identifiers; it never spares one that does.
    assert carrying_clicks and carrying_clicks <= erasure.deleted
    assert carrying_conversions and carrying_conversions <= erasure.anonymised
    report = dict(line.split(": ", 1) for line in erasure.lines)
    assert report["raw.clicks"] == f"{len(erasure.deleted)} row(s) deleted"
    assert report["raw.conversions"] == f"{len(erasure.anonymised)} row(s) anonymised"
    assert int(report["identifiers suppressed (hash only)"]) >= 3
    assert erasure.revenue[1] == pytest.approx(erasure.revenue[0])  # conversions stay, as anonymous revenue
    before, after = erasure.others
    assert after == before
    kinds = {row[0] for row in erasure.rows["raw.suppressions"]}
    assert {"email", "user_id", "cookie"} <= kinds
    assert erasure.leftovers == []


def test_forget_on_spark_erases_the_rows_duckdb_erases(runs: dict[str, dict[str, object]]) -> None:
    spark, duckdb = runs["spark"]["erasure"], runs["duckdb"]["erasure"]
    assert spark.lines == duckdb.lines
    assert (spark.deleted, spark.anonymised) == (duckdb.deleted, duckdb.anonymised)
    for table in COMPARED:
        assert spark.rows[table] == duckdb.rows[table], table


def test_spark_raw_retention_keeps_only_hashes_and_leaves_staging_as_it_was(
    runs: dict[str, dict[str, object]],
) -> None:
    retention = runs["spark"]["retention"]
    assert retention["staging_unchanged"]
    assert not {k: n for k, n in retention["clear"].items() if n}, retention["clear"]
    summary = retention["summary"]
    assert set(summary["rows_with_clear_identifiers"]) == {0} and summary["rows_past_window"].sum() > 0


# Last: it replaces the Spark warehouse's raw tables.
def test_a_duckdb_backup_restores_into_spark_and_back_value_for_value(
    runs: dict[str, dict[str, object]], tmp_path: Path
) -> None:
    spark: Warehouse = runs["spark"]["wh"]
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
