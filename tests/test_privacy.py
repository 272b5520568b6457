"""Privacy that holds in production, and event times that cannot poison the schedule (issue 22), on DuckDB and
PostgreSQL.

One generated world per target, loaded with a second file of hostile event times, without ATTRIBUTION_PII_SALT:
the first run gives the warehouse its own random salt, covers only the days of the conversions staging accepts
and rejects the hostile rows with their reasons; raw retention (window 0 days) leaves raw with hashes only and
staging untouched; `attribution forget` erases one generated person, after which no text column of any schema
holds their email, user id or cookie, in clear or as the warehouse's hash, and the revenue totals are unchanged;
their clicks delivered again are dropped at staging as `suppressed`, identifiers and all.
"""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from cli.runner import run_job
from lab.synthetic import WorldConfig, generate_world
from lab.world_files import write_world
from orchestration.settings import dbt_var
from tests.conftest import assert_run_ok, module_target, run_dbt
from warehouse.client import Warehouse, frame_checksum
from warehouse.loader import RAW_COLUMNS, load_folder
from warehouse.privacy import DEVELOPMENT_SALT, SALT_ENV, SaltError, check_salt_setting, ensure_warehouse_salt
from warehouse.target import PROJECT_ROOT, Target, resolve_target

WORLD = WorldConfig(persons=120, seed=23, days=4)
ATTRIBUTION = Path(sys.executable).with_name("attribution")
# (event time, reason) of the hostile rows: each would otherwise stretch a run over years of partitions.
HOSTILE_TIMES = [
    ("2026-02-30T10:00:00Z", "invalid"),
    ("2099-01-01T00:00:00Z", "future"),
    ("2015-06-01T00:00:00Z", "early"),  # before var event_time_floor
]


@dataclass
class Person:
    email: str  # as delivered, stripped
    user_id: str
    cookie: str
    click_ids: list[str]


@dataclass
class Scenario:
    target: Target
    wh: Warehouse
    salt: str
    person: Person
    range_tags: dict[str, str]
    revenue_before: pd.DataFrame
    staging_before_retention: dict[str, str]
    staging_after_retention: dict[str, str]
    # staging.raw_retention as the zero-day retention build left it (the run `forget` starts rebuilds it at 90 days)
    retention_summary: pd.DataFrame
    forget_output: str
    world_dir: Path
    work: Path


def hostile_folder(folder: Path, link_id: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = {
        "clicks": [
            {**dict.fromkeys(RAW_COLUMNS["clicks"], ""), "click_id": f"hostile-click-{reason}", "link_id": link_id,
             "clicked_at": ts, "cookie_id": f"ck-hostile-{reason}"}
            for ts, reason in HOSTILE_TIMES
        ],
        "conversions": [
            {**dict.fromkeys(RAW_COLUMNS["conversions"], ""), "conversion_id": f"hostile-conversion-{reason}",
             "converted_at": ts, "event_type": "purchase", "revenue": "10.00", "currency": "EUR"}
            for ts, reason in HOSTILE_TIMES
        ],
    }  # fmt: skip
    for table, table_rows in rows.items():
        with (folder / f"{table}.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=RAW_COLUMNS[table])
            writer.writeheader()
            writer.writerows(table_rows)
    return folder


def pick_person(world: dict[str, pd.DataFrame]) -> Person:
    """A converting person whose clicks carry an email, a user id and a cookie together."""
    clicks = world["clicks"].fillna("")
    converting = set(world["conversions"]["user_id"].fillna("").str.strip()) - {""}
    full = clicks[(clicks["email"].str.strip() != "") & (clicks["user_id"].str.strip().isin(converting))
                  & (clicks["cookie_id"].str.strip() != "")]  # fmt: skip
    assert not full.empty, "the generated world has no converting person with email, user id and cookie together"
    row = full.iloc[0]
    user_id = row["user_id"].strip()
    mine = clicks[clicks["user_id"].str.strip() == user_id]
    return Person(row["email"].strip(), user_id, row["cookie_id"].strip(), list(mine["click_id"].str.strip()))


def attribution(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ATTRIBUTION), *args], cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def revenue_totals(wh: Warehouse) -> pd.DataFrame:
    with wh.connect() as conn:
        return wh.query_df(
            "select model, sum(credit_revenue) as revenue, count(distinct conversion_id) as conversions "
            "from marts.fct_attribution_credits group by model order by model",
            conn,
        )


def staging_checksums(wh: Warehouse) -> dict[str, str]:
    with wh.connect() as conn:
        return {
            t: frame_checksum(wh.query_df(f"select * from staging.{t} order by 1", conn))
            for t in ("stg_raw__clicks", "stg_raw__conversions", "stg_raw__links")
        }


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    work = tmp_path_factory.mktemp(f"privacy_{request.param}")
    world = generate_world(WORLD)
    world_dir = work / "world"
    write_world(world, world_dir)
    person = pick_person(world)
    with module_target(request.param, work, prefix="attr_privacy") as target, pytest.MonkeyPatch.context() as mp:
        mp.delenv(SALT_ENV, raising=False)  # the warehouse's own salt, as in production
        wh = Warehouse(target)
        load_folder(wh, world_dir)
        load_folder(wh, hostile_folder(work / "hostile", str(world["links"]["link_id"].iloc[0])))

        result = run_job(target)
        assert_run_ok(result)
        range_tags = dict(result.dagster_run.tags)  # the partitions the run covered
        with wh.connect() as conn:
            salt = str(wh.scalar("select max(salt) from raw.pii_salt", conn))
        revenue_before = revenue_totals(wh)

        before = staging_checksums(wh)
        with pytest.MonkeyPatch.context() as retention:
            retention.setenv("ATTRIBUTION_RAW_RETENTION_DAYS", "0")
            run_dbt(target, "build", "--select", "raw_retention", target_path=work / "dbt_retention")
        after = staging_checksums(wh)
        retention_summary = wh.query_df("select * from staging.raw_retention")

        forgot = attribution("forget", "--email", f"  {person.email.upper()} ", "--user-id", person.user_id,
                             "--cookie", person.cookie)  # fmt: skip
        assert forgot.returncode == 0, forgot.stdout[-4000:] + forgot.stderr[-4000:]
        yield Scenario(target, wh, salt, person, range_tags, revenue_before, before, after,
                       retention_summary, forgot.stdout, world_dir, work)  # fmt: skip


# ------------------------------------------------------------------------------------------------ event times ---
def test_hostile_event_times_are_rejected_with_a_reason_and_do_not_widen_the_run(scenario: Scenario) -> None:
    with scenario.wh.connect() as conn:
        rejected = scenario.wh.query_df(
            "select source_table, record_key, reason from staging.rejected_rows where record_key like 'hostile-%'", conn
        )
        days = scenario.wh.query_df("select min(converted_date) as first, max(converted_date) as last "
                                    "from staging.stg_raw__conversions", conn)  # fmt: skip
    reasons = dict(zip(rejected["record_key"], rejected["reason"], strict=True))
    for _, kind in HOSTILE_TIMES:
        assert reasons[f"hostile-click-{kind}"] == f"{kind}_clicked_at", reasons
        assert reasons[f"hostile-conversion-{kind}"] == f"{kind}_converted_at", reasons
    # The run covered the days of the accepted conversions, not 2015 to 2099 (nor every partition).
    first = date.fromisoformat(scenario.range_tags["dagster/asset_partition_range_start"])
    last = date.fromisoformat(scenario.range_tags["dagster/asset_partition_range_end"])
    assert (first, last) == (pd.Timestamp(days["first"].iloc[0]).date(), pd.Timestamp(days["last"].iloc[0]).date())
    assert last - first <= timedelta(days=WORLD.days + 1)


def test_ip_spellings_and_the_staging_rules_agree_on_this_target(scenario: Scenario) -> None:
    """The unit tests of the IP canonical forms and of the counted invalid IPs run on this engine."""
    out = run_dbt(scenario.target, "test", "--select", "test_type:unit,stg_raw__clicks",
                  "test_type:unit,rejected_values", target_path=scenario.work / "dbt_unit")  # fmt: skip
    assert "stg_raw__clicks_ip_canonical_forms" in out.stdout and "rejected_values_counts_unparsable_ips" in out.stdout


# ------------------------------------------------------------------------------------------------------ salt ---
def test_the_warehouse_has_its_own_random_salt_backed_up_with_raw(scenario: Scenario) -> None:
    assert len(scenario.salt) == 64 and int(scenario.salt, 16) >= 0 and scenario.salt != DEVELOPMENT_SALT
    assert scenario.salt not in (PROJECT_ROOT / "dbt_project.yml").read_text()
    with scenario.wh.connect() as conn:
        hashes = scenario.wh.query_df("select email_hash from staging.stg_raw__conversions "
                                      "where email_hash is not null limit 1", conn)  # fmt: skip
        emails = scenario.wh.query_df("select email from raw.conversions", conn)
    # Staging hashed with it: some raw email (normalised like staging) hashes to a staged hash with this salt.
    candidates = {hashlib.sha256((scenario.salt + e.strip().lower()).encode()).hexdigest() for e in emails["email"]
                  if isinstance(e, str) and "@" in e}  # fmt: skip
    assert hashes.empty or hashes["email_hash"].iloc[0] in candidates or len(candidates) == 0


def test_a_public_salt_is_refused_outside_duckdb_and_a_staged_warehouse_gets_no_silent_new_salt(tmp_path) -> None:
    pg = resolve_target("postgres", environ={})
    with pytest.raises(SaltError, match="development value"):
        check_salt_setting(pg, {SALT_ENV: DEVELOPMENT_SALT})
    assert check_salt_setting(pg, {SALT_ENV: "a-secret-of-my-own"}) == "a-secret-of-my-own"
    duck = resolve_target(
        environ={"ATTRIBUTION_TARGET": "duckdb", "ATTRIBUTION_DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    )
    wh = Warehouse(duck)
    with wh.connect() as conn:
        wh.ensure_schemas(conn)
        wh.execute("create table staging.stg_raw__clicks (click_id text)", conn)
    with pytest.raises(SaltError, match="full-refresh"):
        ensure_warehouse_salt(wh, full_refresh=False, environ={})
    assert "created" in (ensure_warehouse_salt(wh, full_refresh=True, environ={}) or "")
    assert ensure_warehouse_salt(wh, full_refresh=False, environ={}) is None  # kept, never replaced


# ------------------------------------------------------------------------------------------------- retention ---
def test_raw_retention_keeps_only_hashes_and_leaves_staging_as_it_was(scenario: Scenario) -> None:
    assert scenario.staging_after_retention == scenario.staging_before_retention
    junk = ", ".join(f"'{v}'" for v in ["", *dbt_var("junk_identifier_values")])  # placeholders, not identifiers
    with scenario.wh.connect() as conn:
        for table in ("clicks", "conversions"):
            for column in ("email", "ip", "user_id", "cookie_id"):
                clear = scenario.wh.scalar(
                    f"select count(*) from raw.{table} where {column} not like 'sha256:%' "
                    f"and lower(trim({column})) not in ({junk})",
                    conn,
                )
                assert int(clear) == 0, f"raw.{table}.{column}: {clear} clear value(s) past the retention window"
    summary = scenario.retention_summary
    assert set(summary["rows_with_clear_identifiers"]) == {0} and summary["rows_past_window"].sum() > 0


# ---------------------------------------------------------------------------------------------------- forget ---
def needles(scenario: Scenario) -> dict[str, str]:
    p, salt = scenario.person, scenario.salt

    def h(value: str) -> str:
        return hashlib.sha256((salt + value).encode()).hexdigest()

    email = p.email.lower()
    return {"email": email, "user_id": p.user_id, "cookie": p.cookie,
            "email hash": h(email), "user_id hash": h(p.user_id), "cookie hash": h(p.cookie)}  # fmt: skip


def scan(wh: Warehouse, values: dict[str, str], schemas: tuple[str, ...] | None = None) -> list[str]:
    """Every text column of every schema (or of ``schemas``) holding one of ``values``."""
    hits = []
    with wh.connect() as conn:
        columns = wh.query_df(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where lower(data_type) in ('varchar', 'text', 'character varying') "
            "and table_schema not in ('information_schema', 'pg_catalog', 'pg_toast')",
            conn,
        )
        for schema, table, column in columns.itertuples(index=False):
            if schemas is not None and schema not in schemas:
                continue
            for name, value in values.items():
                n = wh.scalar(
                    f'select count(*) from "{schema}"."{table}" where strpos("{column}", \'{value}\') > 0', conn
                )
                if int(n):
                    hits.append(f"{schema}.{table}.{column}: {n} row(s) hold the person's {name}")
    assert len(columns) > 100, "the scan found too few text columns to mean anything"
    return hits


def test_forget_erases_the_person_from_every_schema_and_keeps_the_revenue(scenario: Scenario) -> None:
    assert "raw.clicks:" in scenario.forget_output and "identifiers suppressed" in scenario.forget_output
    assert scan(scenario.wh, needles(scenario)) == []
    after = revenue_totals(scenario.wh)
    pd.testing.assert_frame_equal(after, scenario.revenue_before, check_dtype=False)
    with scenario.wh.connect() as conn:
        kinds = scenario.wh.query_df("select identifier_type, count(*) as n from raw.suppressions group by 1", conn)
    assert {"email", "user_id", "cookie"} <= set(kinds["identifier_type"])


def test_a_redelivered_row_of_the_erased_person_is_dropped_at_staging(scenario: Scenario) -> None:
    clicks = pd.read_csv(scenario.world_dir / "clicks.csv", dtype=str, keep_default_na=False)
    again = scenario.work / "redelivered"
    again.mkdir()
    mine = clicks[clicks["click_id"].str.strip().isin(scenario.person.click_ids)]
    mine.to_csv(again / "clicks.csv", index=False)
    load_folder(scenario.wh, again)
    run_dbt(scenario.target, "build", "--select", "staging", "--exclude-resource-type", "unit_test",
            target_path=scenario.work / "dbt_redelivered")  # fmt: skip
    with scenario.wh.connect() as conn:
        rejected = scenario.wh.query_df("select record_key, reason, raw_payload from staging.rejected_rows "
                                        "where source_table = 'clicks'", conn)  # fmt: skip
        staged = set(scenario.wh.query_df("select click_id from staging.stg_raw__clicks", conn)["click_id"])
    ids = set(mine["click_id"].str.strip())
    suppressed = rejected[rejected["record_key"].isin(ids)]
    assert set(suppressed["reason"]) == {"suppressed"} and set(suppressed["record_key"]) == ids
    assert not ids & staged
    # Raw holds the re-delivery (it arrived); nothing after raw does.
    assert scan(scenario.wh, needles(scenario), schemas=("staging", "intermediate", "marts")) == []
