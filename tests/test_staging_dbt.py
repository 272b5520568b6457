"""dbt staging on both targets: typing, dedup, normalisation, bot flags, PII hashing, quarantine, incrementality.

One scenario per target, run once (module-scoped) and inspected by the tests below:

1. load a small dirty world (load A) and ``dbt build --select staging`` (models, data tests, unit tests);
2. load the same files again and rebuild incrementally: staged content must not change;
3. load corrections (load B: later versions, a late valid version of a rejected key, a corrupt re-delivery);
   rebuild incrementally, then ``--full-refresh``: both must give identical tables.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import (
    REQUIRE_POSTGRES,
    create_pg_database,
    drop_pg_database,
    make_target,
    postgres_unavailable_reason,
    run_dbt,
)
from warehouse.client import Warehouse
from warehouse.loader import RAW_COLUMNS, load_folder
from warehouse.target import Target

SALT = "pytest-staging-salt"
STAGED = {"stg_raw__links": "link_id", "stg_raw__clicks": "click_id", "stg_raw__conversions": "conversion_id"}

# Fixture times are relative to "now" so that `dbt source freshness` sees a fresh feed.
NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=3)


def iso(dt: datetime, offset_hours: float = 0) -> str:
    """ISO 8601 text of ``dt`` written in another UTC offset (same instant)."""
    return dt.astimezone(timezone(timedelta(hours=offset_hours))).isoformat()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


UA_CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
UA_INSTAGRAM_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 Instagram 307.0.0.34.111 (iPhone14,5; iOS 17_1; en_US; en; scale=3.00; 1170x2532; 531693505)"
)
UA_TIKTOK_ANDROID = (
    "Mozilla/5.0 (Linux; Android 13; SM-S911B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 musical_ly_2023108040 JsSdk/1.0 NetType/WIFI "
    "Channel/googleplay AppName/musical_ly app_version/31.8.4 ByteLocale/en ByteFullLocale/en Region/US "
    "BytedanceWebview/d8a21c6"
)
UA_FACEBOOK_PREVIEW = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
UA_HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.71 Safari/537.36"
)
UA_TWITTERBOT = "Twitterbot/1.0"
UA_APP_OKHTTP = "MyShopApp/5.2 (Android 13; Pixel 7) okhttp/4.9.0"

RAW_EMAILS = [" John.Doe+promo@GoogleMail.com ", "johndoe@gmail.com", "JohnDoe@gmail.com", "jane.roe@example.org"]


def link(link_id: str, created_at: str, channel: str = "instagram", **kw: str) -> dict[str, str]:
    row = {"link_id": link_id, "short_code": f"s-{link_id.strip()}", "campaign_id": "camp1", "creator_id": "cr1",
           "channel": channel, "destination_url": "https://shop.example/p/1", "created_at": created_at}  # fmt: skip
    return {**row, **kw}


def click(click_id: str, link_id: str = "L1", clicked_at: str | None = None, **kw: str) -> dict[str, str]:
    row = dict.fromkeys(RAW_COLUMNS["clicks"], "")
    own_ip = f"198.51.100.{sum(map(ord, click_id)) % 200 + 1}"  # distinct per fixture click: no accidental burst
    row.update(click_id=click_id, link_id=link_id, clicked_at=clicked_at or iso(at(60)), ip=own_ip,
               user_agent=UA_CHROME_WIN, cookie_id=f"ck-{click_id}")  # fmt: skip
    row.update(kw)
    return row


def conversion(conversion_id: str, **kw: str) -> dict[str, str]:
    row = dict.fromkeys(RAW_COLUMNS["conversions"], "")
    row.update(conversion_id=conversion_id, converted_at=iso(at(3600), -5), event_type="purchase",
               revenue="10.00", currency="EUR", user_agent=UA_CHROME_WIN)  # fmt: skip
    row.update(kw)
    return row


LINKS_A = [
    link("L1", iso(at(-86400), 1), channel=" Instagram "),
    link("L1", iso(at(-86400), 1), channel=" Instagram "),  # identical repeat
    link(" L2 ", iso(at(0), 5.5), channel="TIKTOK"),  # padded key, +05:30 offset
    link("L3", "yesterday"),  # unparseable -> rejected
    link("L4", ""),  # no creation time: kept, created_at null
    link("", iso(at(0))),  # missing key
    link("null", iso(at(0))),  # junk key = missing key
]
CLICKS_A = [
    click(
        "c01",
        clicked_at=iso(at(60), 2),
        ip="203.0.113.7",
        email=RAW_EMAILS[0],
        session_id="s1",
        device_fingerprint="fp1",
        user_id="u1",
    ),
    click(
        "c01",
        clicked_at=iso(at(60), 2),
        ip="203.0.113.7",
        email=RAW_EMAILS[0],
        session_id="s1",
        device_fingerprint="fp1",
        user_id="u1",
    ),  # identical repeat
    click(
        "c02",
        ip="::FFFF:198.51.100.23",
        user_agent=UA_INSTAGRAM_IOS,
        email=RAW_EMAILS[1],
        cookie_id="NULL",
        session_id="",
        user_id="undefined",
        device_fingerprint=" - ",
    ),
    click("c03", "L2", ip="69.171.250.1", user_agent=UA_FACEBOOK_PREVIEW),
    click("c04", "L2", ip="198.51.100.99", user_agent=UA_HEADLESS),
    click("c05", "L2", user_agent="python-requests/2.31.0"),
    click("c06", "L2", user_agent="curl/8.4.0"),
    click("c07", "L2", user_agent=""),
    click("c08", "L2", ip="3.85.10.20"),  # AWS us-east-1
    click("c09", clicked_at="garbage"),
    click("c10", clicked_at="2999-01-01T00:00:00Z"),
    click("c11", link_id=""),
    click("", ip="198.51.100.7"),
    click("undefined"),
    click("c12", ip="2001:0DB8:ABCD:0012::1", user_agent=UA_TIKTOK_ANDROID),
    click("c13", cookie_id="ck13a"),
    click("c14", clicked_at="31/12/2024 10:00"),  # invalid now, valid in load B
    click("c15", cookie_id="ck15a"),  # valid now, corrupt re-delivery in load B
    click("c16", link_id="L999"),  # unknown link: kept
    click("c17", "L2", clicked_at=iso(at(2))),  # 2 s after L2's creation: a preview fetch
    click("c18", user_agent="okhttp/4.9.0", ip="not an ip"),  # kept, its IP counted in rejected_values
    click("c19", user_agent=UA_APP_OKHTTP),
    click("c20", user_agent=UA_TWITTERBOT),
    *[click(f"b{i:02d}", ip="192.0.2.50", clicked_at=iso(at(600 + i))) for i in range(1, 10)],  # a burst
]
CONVERSIONS_A = [
    conversion("v01", email=RAW_EMAILS[2], ip="::ffff:203.0.113.7", click_id="c01", revenue="19.99", currency="usd"),
    conversion("v02", event_type=" SignUp ", revenue="", currency=""),
    conversion("v03", revenue="abc"),
    conversion("v04", revenue="-5"),
    conversion("v05", revenue="NaN"),
    conversion("v06", revenue="5e10"),
    conversion("v07", converted_at="not a time"),
    conversion("v08", event_type="PURCHASE", revenue="10", currency=""),
    conversion("v09", revenue="12.50", email=RAW_EMAILS[3]),
    conversion(""),
    conversion("v10", currency="EURO"),
    conversion("v11", event_type=""),
    conversion("v12", revenue=" 7.10 ", currency=" gbp ", click_id="null"),
]
LINKS_B = [link("L5", iso(at(100)), channel="youtube")]
CLICKS_B = [
    click(
        "c01",
        clicked_at=iso(at(60), 2),
        ip="203.0.113.7",
        email=RAW_EMAILS[0],
        session_id="s1",
        device_fingerprint="fp1",
        user_id="u1",
    ),  # identical again
    click("c13", cookie_id="ck13b", ip="999.1.1.1"),  # later version wins, its IP counted
    click("c14", clicked_at=iso(at(120), -3)),  # now valid: leaves the quarantine
    click("c15", cookie_id="ck15b", clicked_at="corrupt"),  # invalid later version: the valid one stays
    click("c21", "L5", ip="1::2::3"),
]
CONVERSIONS_B = [conversion("v09", revenue="15.00", email=RAW_EMAILS[3])]


def write_world(folder: Path, links: list[dict], clicks: list[dict], conversions: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("links", links), ("clicks", clicks), ("conversions", conversions)):
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(RAW_COLUMNS[name]))
            writer.writeheader()
            writer.writerows(rows)
    return folder


# ------------------------------------------------------------------------------------------------- scenario ---
@dataclass
class StagingRun:
    """Staging tables (schema staging) snapshotted after each step of the scenario, for one target."""

    target: Target
    after_load_a: dict[str, pd.DataFrame] = field(default_factory=dict)
    after_reload_a: dict[str, pd.DataFrame] = field(default_factory=dict)
    incremental_b: dict[str, pd.DataFrame] = field(default_factory=dict)
    full_refresh_b: dict[str, pd.DataFrame] = field(default_factory=dict)
    build_results: dict[str, str] = field(default_factory=dict)  # dbt node name -> status, first build
    final_results: dict[str, str] = field(default_factory=dict)  # the same, full-refresh build
    freshness: dict[str, dict[str, Any]] = field(default_factory=dict)
    load_marks: list[pd.Timestamp] = field(default_factory=list)  # rejected_values' mark after each incremental run
    rejected_values_sql_b: str = ""  # rejected_values as the incremental run of load B compiled it


def snapshot(wh: Warehouse) -> dict[str, pd.DataFrame]:
    frames = {}
    quarantine = {"rejected_rows": ["source_table", "record_key", "reason", "raw_payload"],
                  "rejected_values": ["source_table", "record_key", "column_name"]}  # fmt: skip
    for table, order in {**{t: [k] for t, k in STAGED.items()}, **quarantine}.items():
        df = wh.query_df(f'select * from "staging"."{table}"')
        frames[table] = df.sort_values(order, na_position="last").reset_index(drop=True)
    return frames


def load_mark(wh: Warehouse) -> pd.Timestamp:
    marks = wh.query_df("select loaded_through from staging.dbt_load_marks where model_name = 'rejected_values'")
    assert len(marks) == 1, marks
    return pd.Timestamp(marks["loaded_through"].iloc[0])


def node_statuses(dbt_target: Path) -> dict[str, str]:
    results = json.loads((dbt_target / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[-1]: r["status"] for r in results}


def run_scenario(target: Target, work: Path) -> StagingRun:
    dbt_target = work / "dbt_target"  # one target path: later invocations parse partially
    folder_a = write_world(work / "load_a", LINKS_A, CLICKS_A, CONVERSIONS_A)
    folder_b = write_world(work / "load_b", LINKS_B, CLICKS_B, CONVERSIONS_B)
    wh = Warehouse(target)
    run = StagingRun(target)

    load_folder(wh, folder_a)
    # Before any build: on PostgreSQL this also proves the on-run-start hook creates the safe-cast functions.
    run_dbt(target, "source", "freshness", "--select", "source:raw", target_path=dbt_target)
    sources = json.loads((dbt_target / "sources.json").read_text())["results"]
    run.freshness = {r["unique_id"].rsplit(".", 1)[-1]: r for r in sources}

    run_dbt(target, "build", "--select", "staging", target_path=dbt_target)  # models, data tests, unit tests
    run.build_results = node_statuses(dbt_target)
    run.after_load_a = snapshot(wh)

    load_folder(wh, folder_a, force=True)  # at-least-once delivery: the same files again
    run_dbt(target, "run", "--select", "staging", target_path=dbt_target)
    run.after_reload_a = snapshot(wh)
    run.load_marks.append(load_mark(wh))

    load_folder(wh, folder_b)
    run_dbt(target, "run", "--select", "staging", target_path=dbt_target)
    run.incremental_b = snapshot(wh)
    run.load_marks.append(load_mark(wh))
    compiled = dbt_target / "compiled" / "link_attribution" / "dbt_project" / "models" / "staging"
    run.rejected_values_sql_b = (compiled / "rejected_values.sql").read_text()

    # Data tests (count invariant included) again, on the corrected data, after rebuilding from scratch.
    run_dbt(target, "build", "--select", "staging", "--full-refresh", "--exclude-resource-type", "unit_test",
            target_path=dbt_target)  # fmt: skip
    run.final_results = node_statuses(dbt_target)
    run.full_refresh_b = snapshot(wh)
    return run


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def staging_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StagingRun]:
    """The scenario on a throwaway DuckDB file or PostgreSQL database (skipped without a server, unless
    REQUIRE_POSTGRES=1)."""
    work = tmp_path_factory.mktemp(f"staging_{request.param}")
    admin: dict[str, object] | None = None
    dbname = None
    if request.param == "postgres":
        reason = postgres_unavailable_reason()
        if reason:
            if REQUIRE_POSTGRES:
                pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}")
            pytest.skip(reason)
        admin = request.getfixturevalue("postgres_server")
        dbname = create_pg_database(admin, prefix="stg_test")
    target = make_target(request.param, work, dbname)
    try:
        with pytest.MonkeyPatch.context() as mp:  # the environment is restored before the tests inspect the run
            mp.setenv("ATTRIBUTION_PII_SALT", SALT)
            # A pathological plan must fail this test, not exhaust a shared server.
            mp.setenv("PGOPTIONS", "-c statement_timeout=120s")
            run = run_scenario(target, work)
        yield run
    finally:
        if admin is not None and dbname is not None:
            drop_pg_database(admin, dbname)


# ---------------------------------------------------------------------------------------------- helpers ---
def sha(value: str) -> str:
    return hashlib.sha256((SALT + value).encode()).hexdigest()


def junk_values() -> set[str]:
    import yaml

    project = yaml.safe_load((Path(__file__).resolve().parent.parent / "dbt_project.yml").read_text())
    return {"", *(str(v).strip().lower() for v in project["vars"]["junk_identifier_values"])}


def clean_key(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in junk_values() else value.strip()


def by_key(frames: dict[str, pd.DataFrame], table: str) -> dict[str, dict[str, Any]]:
    return {row[STAGED[table]]: row for row in frames[table].to_dict("records")}


def is_null(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))


def rejected(frames: dict[str, pd.DataFrame]) -> dict[tuple[str, str | None], list[str]]:
    out: dict[tuple[str, str | None], list[str]] = {}
    for row in frames["rejected_rows"].to_dict("records"):
        key = None if is_null(row["record_key"]) else row["record_key"]
        out.setdefault((row["source_table"], key), []).append(row["reason"])
    return out


def comparable(df: pd.DataFrame, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    return df.drop(columns=list(drop)).astype(object).where(df.drop(columns=list(drop)).notna(), None)


# ------------------------------------------------------------------------------------------------ tests ---
def test_duplicates_collapse_to_one_row_per_key(staging_run: StagingRun) -> None:
    frames = staging_run.after_load_a
    for table, key in STAGED.items():
        assert frames[table][key].is_unique, f"{table}.{key} has duplicates"
    assert sorted(frames["stg_raw__links"]["link_id"]) == ["L1", "L2", "L4"]
    clicks = set(frames["stg_raw__clicks"]["click_id"])
    assert clicks == {f"c{i:02d}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 15, 16, 17, 18, 19, 20)} | {
        f"b{i:02d}" for i in range(1, 10)
    }
    assert sorted(frames["stg_raw__conversions"]["conversion_id"]) == ["v01", "v02", "v09", "v12"]


def test_dirty_values_are_normalised(staging_run: StagingRun) -> None:
    frames = staging_run.after_load_a
    links, clicks, convs = (by_key(frames, t) for t in STAGED)
    assert links["L1"]["channel"] == "instagram" and links["L2"]["channel"] == "tiktok"
    assert pd.Timestamp(links["L2"]["created_at"]) == pd.Timestamp(T0)  # written with a +05:30 offset
    assert is_null(links["L4"]["created_at"])
    assert pd.Timestamp(clicks["c01"]["clicked_at"]) == pd.Timestamp(at(60))  # written with +02:00
    assert str(clicks["c01"]["clicked_date"])[:10] == at(60).date().isoformat()
    # junk and empty identifiers
    for column in ("cookie_id", "session_id", "user_id", "device_fingerprint"):
        assert is_null(clicks["c02"][column]), column
    assert clicks["c01"]["session_id"] == "s1" and clicks["c01"]["user_id"] == "u1"
    # email variants hash alike (plus-tag, case, dots and googlemail for Gmail)
    assert clicks["c01"]["email_hash"] == clicks["c02"]["email_hash"] == convs["v01"]["email_hash"]
    assert clicks["c01"]["email_hash"] == sha("johndoe@gmail.com")
    assert convs["v09"]["email_hash"] == sha("jane.roe@example.org")
    # IPv4-mapped IPv6 is IPv4; networks are /24 and /48
    assert clicks["c01"]["ip_hash"] == convs["v01"]["ip_hash"] == sha("203.0.113.7")
    assert clicks["c02"]["ip_hash"] == sha("198.51.100.23")
    assert clicks["c02"]["ip_network_hash"] == sha("198.51.100.0/24")
    assert clicks["c12"]["ip_hash"] == sha("2001:db8:abcd:12::1")
    assert clicks["c12"]["ip_network_hash"] == sha("2001:db8:abcd::/48")
    # user agents
    assert (clicks["c02"]["in_app_browser"], clicks["c02"]["device_family"]) == ("instagram", "mobile")
    assert (clicks["c12"]["in_app_browser"], clicks["c12"]["os_family"]) == ("tiktok", "android")
    assert (clicks["c01"]["device_family"], clicks["c01"]["browser"]) == ("desktop", "chrome")
    # conversions
    assert float(convs["v01"]["revenue"]) == pytest.approx(19.99) and convs["v01"]["currency"] == "USD"
    assert convs["v02"]["event_type"] == "signup" and is_null(convs["v02"]["revenue"])
    assert is_null(convs["v02"]["currency"])
    assert convs["v12"]["currency"] == "GBP" and float(convs["v12"]["revenue"]) == pytest.approx(7.10)
    assert convs["v01"]["direct_click_id"] == "c01" and is_null(convs["v12"]["direct_click_id"])


def test_row_level_bot_rules(staging_run: StagingRun) -> None:
    clicks = by_key(staging_run.after_load_a, "stg_raw__clicks")
    expected = {"c03": "link_preview", "c20": "link_preview", "c04": "automation_client",
                "c05": "automation_client", "c06": "automation_client", "c18": "automation_client",
                "c07": "empty_user_agent", "c08": "datacenter_ip"}  # fmt: skip
    flagged = {k: row["bot_reason"] for k, row in clicks.items() if row["is_bot"]}
    assert flagged == expected
    assert bool(clicks["c08"]["is_datacenter_ip"]) and not clicks["c19"]["is_bot"]  # app embedding okhttp


def test_singular_and_unit_tests_ran(staging_run: StagingRun) -> None:
    """dbt build ran the staging unit tests and singular tests (invariants) and they passed; the full-refresh build
    ran the singular tests again on the corrected data. (The behavioural bot rules are int_clicks' unit tests.)"""
    first, final = staging_run.build_results, staging_run.final_results
    singular = ["assert_raw_keys_staged_or_rejected", "assert_staging_value_rules"]
    for name in singular:
        assert first.get(name) == "pass" and final.get(name) == "pass", name
    models = {*STAGED, "stg_raw__conversion_days", "stg_raw__fx_rates", "stg_raw__spend"}  # models, not unit tests
    unit_tests = [n for n in first if n.startswith(("stg_raw__", "rejected_rows_")) and n not in models]
    assert len(unit_tests) >= 12 and all(first[n] == "pass" for n in unit_tests), unit_tests


def test_rejected_rows_have_reasons(staging_run: StagingRun) -> None:
    assert rejected(staging_run.after_load_a) == {
        ("links", "L3"): ["invalid_created_at"],
        ("links", None): ["missing_key", "missing_key"],
        ("clicks", "c09"): ["invalid_clicked_at"],
        ("clicks", "c10"): ["future_clicked_at"],
        ("clicks", "c11"): ["missing_link_id"],
        ("clicks", "c14"): ["invalid_clicked_at"],
        ("clicks", None): ["missing_key", "missing_key"],
        ("conversions", "v03"): ["invalid_revenue"],
        ("conversions", "v04"): ["negative_revenue"],
        ("conversions", "v05"): ["invalid_revenue"],
        ("conversions", "v06"): ["revenue_too_large"],
        ("conversions", "v07"): ["invalid_converted_at"],
        ("conversions", "v08"): ["missing_currency"],  # revenue without a currency: never assumed
        ("conversions", "v10"): ["invalid_currency"],
        ("conversions", "v11"): ["missing_event_type"],
        ("conversions", None): ["missing_key"],
    }
    payloads = staging_run.after_load_a["rejected_rows"]["raw_payload"]
    assert all(json.loads(p)["_source_file"].endswith(".csv") for p in payloads)  # valid JSON, file named


@pytest.mark.parametrize("step", ["after_load_a", "after_reload_a", "incremental_b", "full_refresh_b"])
def test_every_raw_key_is_staged_or_rejected(staging_run: StagingRun, step: str) -> None:
    frames = getattr(staging_run, step)
    loads = {"after_load_a": ["a"], "after_reload_a": ["a", "a"], "incremental_b": ["a", "a", "b"]}
    loads["full_refresh_b"] = loads["incremental_b"]
    worlds = {"a": (LINKS_A, CLICKS_A, CONVERSIONS_A), "b": (LINKS_B, CLICKS_B, CONVERSIONS_B)}
    raw = {
        name: [row for load in loads[step] for row in worlds[load][i]]
        for i, name in enumerate(("links", "clicks", "conversions"))
    }
    for (table, key), source in zip(STAGED.items(), raw, strict=True):
        keys = [clean_key(row[key]) for row in raw[source]]
        staged = set(frames[table][key])
        quarantined = frames["rejected_rows"].query("source_table == @source")["record_key"]
        keyed = [k for k in quarantined if not is_null(k)]
        assert len(keyed) == len(set(keyed)), f"{source}: a key is quarantined twice"
        assert staged.isdisjoint(keyed), f"{source}: keys both staged and quarantined"
        assert staged | set(keyed) == {k for k in keys if k is not None}, f"{source}: keys lost or invented"
        assert len(quarantined) - len(keyed) == sum(k is None for k in keys), f"{source}: keyless rows"


def test_later_versions_and_late_valid_rows(staging_run: StagingRun) -> None:
    frames = staging_run.incremental_b
    clicks, convs = by_key(frames, "stg_raw__clicks"), by_key(frames, "stg_raw__conversions")
    assert clicks["c13"]["cookie_id"] == "ck13b"  # the later load wins
    assert clicks["c15"]["cookie_id"] == "ck15a"  # a corrupt later version does not replace a valid one
    assert pd.Timestamp(clicks["c14"]["clicked_at"]) == pd.Timestamp(at(120))  # late valid version staged ...
    assert ("clicks", "c14") not in rejected(frames)  # ... and out of the quarantine
    assert float(convs["v09"]["revenue"]) == 15 and "L5" in set(frames["stg_raw__links"]["link_id"])


def test_unusable_values_of_every_load_are_counted(staging_run: StagingRun) -> None:
    def counted(frames: dict[str, pd.DataFrame]) -> set[tuple[str, str, str]]:
        values = frames["rejected_values"]
        return set(zip(values["source_table"], values["record_key"], values["reason"], strict=True))

    assert counted(staging_run.after_load_a) == {("clicks", "c18", "invalid_ip")}
    assert counted(staging_run.incremental_b) == {("clicks", k, "invalid_ip") for k in ("c13", "c18", "c21")}
    staged = by_key(staging_run.incremental_b, "stg_raw__clicks")
    assert all(is_null(staged[k]["ip_hash"]) for k in ("c13", "c18", "c21"))


def test_unusable_values_are_read_from_the_load_mark(staging_run: StagingRun) -> None:
    """rejected_values holds rows only for unusable values, so its own newest row cannot tell how far it has read;
    each run records the newest load the staged tables hold, and the next reads raw from there."""

    def newest_staged(frames: dict[str, pd.DataFrame]) -> pd.Timestamp:
        return max(pd.Timestamp(frames[t]["_loaded_at"].max()) for t in ("stg_raw__clicks", "stg_raw__conversions"))

    after_reload, after_b = staging_run.load_marks
    assert after_reload == newest_staged(staging_run.after_reload_a)
    assert after_b == newest_staged(staging_run.incremental_b) > after_reload
    bound = r"_loaded_at > cast\('([^']+)' as timestamp with time zone\)"
    bounds = re.findall(bound, staging_run.rejected_values_sql_b)
    assert len(bounds) == 2 and {pd.Timestamp(b) for b in bounds} == {after_reload}, bounds


def test_loading_the_same_files_twice_changes_no_staged_content(staging_run: StagingRun) -> None:
    before, after = staging_run.after_load_a, staging_run.after_reload_a
    for table in STAGED:
        pd.testing.assert_frame_equal(
            comparable(before[table], ("_loaded_at",)), comparable(after[table], ("_loaded_at",)), obj=table
        )
    # The quarantine keeps one row per key; only keyless raw rows, each its own row by contract, double.
    keyed = [
        comparable(f["rejected_rows"].dropna(subset=["record_key"]).reset_index(drop=True), ("_loaded_at",))
        for f in (before, after)
    ]
    pd.testing.assert_frame_equal(*keyed, obj="rejected_rows with a key")
    keyless = [int(f["rejected_rows"]["record_key"].isna().sum()) for f in (before, after)]
    assert keyless[1] == 2 * keyless[0]


def test_incremental_run_equals_full_refresh(staging_run: StagingRun) -> None:
    for table in (*STAGED, "rejected_rows", "rejected_values"):
        pd.testing.assert_frame_equal(
            comparable(staging_run.incremental_b[table]), comparable(staging_run.full_refresh_b[table]), obj=table
        )


def test_no_raw_email_or_ip_in_any_staging_table(staging_run: StagingRun) -> None:
    raw_rows = CLICKS_A + CLICKS_B + CONVERSIONS_A + CONVERSIONS_B
    emails = {r["email"].strip().lower() for r in raw_rows if "@" in r["email"]} | {"johndoe@gmail.com"}
    ips = {r["ip"].strip().lower() for r in raw_rows if r["ip"].strip()}
    ips |= {ip.removeprefix("::ffff:") for ip in ips} | {"2001:db8:abcd:12::1", "198.51.100.0", "2001:db8:abcd::"}
    for step in ("after_load_a", "after_reload_a", "incremental_b", "full_refresh_b"):
        for table, df in getattr(staging_run, step).items():
            cells = {str(v).lower() for v in df.to_numpy().ravel() if not is_null(v)}
            for cell in cells:
                assert "@" not in cell and not any(e in cell for e in emails), f"{table} holds an email: {cell[:80]}"
                leaked = [ip for ip in ips if ip in cell]
                assert not leaked, f"{table} holds raw IP {leaked} in {cell[:120]}"


def test_source_freshness_reads_text_event_times(staging_run: StagingRun) -> None:
    fresh = staging_run.freshness
    # No rates nor spend were ever loaded here: a warning, never an error (both are optional).
    assert {name: r["status"] for name, r in fresh.items()} == {"links": "pass", "clicks": "pass",
                                                                "conversions": "pass", "fx_rates": "warn",
                                                                "spend": "warn"}  # fmt: skip
    # the newest *parseable, non-future* click: the year-2999 junk row is ignored
    newest_click = max(at(600 + i) for i in range(1, 10))
    assert pd.Timestamp(fresh["clicks"]["max_loaded_at"]) == pd.Timestamp(newest_click)
