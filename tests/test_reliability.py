"""Reliability suite (issue 8), on DuckDB and PostgreSQL.

Bad input: every text column of every raw table receives SQL fragments, quotes, separators, control characters,
unicode and ~100 KB values, beside broken, future and missing timestamps, junk revenue, missing keys and
duplicates. The loader and the staging models must neither crash nor lose a row: every distinct raw key is staged
or quarantined with a reason, and every raw row without a key is quarantined on its own.

Pipeline (one scenario per target, see run_scenario): the end-to-end run evaluates against the world's truth and
leaks no raw PII; the same files loaded twice change nothing; a crash in the middle of attribution leaves nothing
half-written and a rerun ends equal to the clean run; losing raw, restoring it and rebuilding gives every mart back
exactly; readers on PostgreSQL never see an empty, missing or half-built table while tables are rebuilt; a BI
process on the published marts (both targets) never blocks a run and sees the old or the new snapshot, never a mix;
Markov and Shapley credits add up to their fit; a late click is attributed at the next hourly tick.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from cli.runner import data_partition_range, load_definitions, project_instance, run_job
from lab.evaluate import evaluate_warehouse
from lab.synthetic import WorldConfig, generate_world
from lab.world_files import write_world
from orchestration.assets import PYTHON_ASSETS
from orchestration.assets.keys import (
    ATTRIBUTION_CREDITS,
    CONVERSION_ATTRIBUTION,
    IDENTITY_ADDED_NODES,
    IDENTITY_FORWARDS,
    PUBLISHED_MARTS,
)
from orchestration.partitions import REPORTS_BY_WINDOW, REPORTS_TAG
from orchestration.schedules import COVERS_TAG, first_affected_day, hourly_refresh_schedule, refresh_range
from python_models.attribution import MODELS
from tests.conftest import (
    MARTS,
    assert_run_ok,
    mart_checksums,
    mart_row_checksums,
    module_target,
    published_checksums,
    run_dbt,
)
from tests.money import MoneyCheck, check_report_money
from tests.published_reader import duckdb_signature, postgres_signature
from warehouse.backup import backup_raw, restore_raw
from warehouse.client import Warehouse, frame_checksum
from warehouse.loader import RAW_COLUMNS, LoadedEventDays, event_days_loaded_after, load_folder, newest_load
from warehouse.target import PROJECT_ROOT, PUBLISHED_SCHEMA, Target, target_env

NOW = datetime.now(UTC).replace(microsecond=0)
# The scenario's world is generated for a fixed day, not for today: its ids, its weekdays (office hours move
# devices between networks) and so every mart depend on the calendar, and the recorded checksums must hold on any
# day CI runs. The schedule is ticked at this instant too, so its windows are those of the world's own "today".
WORLD_NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KEYS = {"links": "link_id", "clicks": "click_id", "conversions": "conversion_id"}
STAGED = {"links": "stg_raw__links", "clicks": "stg_raw__clicks", "conversions": "stg_raw__conversions"}
EVENT_TIME = {"links": "created_at", "clicks": "clicked_at", "conversions": "converted_at"}
STAGED_OK = "staged"
WHITESPACE = " \t\r\n\v\f"  # what staging trims around identifiers and free text (macro trim_whitespace)


def iso(dt: datetime, offset_hours: float = 0) -> str:
    return dt.astimezone(timezone(timedelta(hours=offset_hours))).isoformat()


# ----------------------------------------------------------------------------------------------- bad input ---
# Hostile text for every column: none of it is a timestamp, a number, a three-letter code or a junk placeholder,
# so where it lands decides the outcome (see expected_outcome).
LONG_TEXT = "Mozilla/5.0 (X11; Linux x86_64) " + "Ä🙂x;'" * 15_000  # ~120 KB of multi-byte UTF-8
NASTY = {
    "sql_drop": "'; drop table raw.clicks; --",
    "sql_drop_dq": '"; drop table staging.stg_raw__clicks; --',
    "sql_union": "x' union select email from raw.clicks where '1'='1",
    "dollar_quote": "$$; drop schema marts cascade; $$",
    "jinja": "{{ var('pii_salt') }}{% do run_query('drop table raw.clicks') %}",
    "printf": "%s %(click_id)s %% %d",
    "backslashes": "C:\\new\\table \\N \\' \\\"",
    "separators": "a,b;c\td|e\nf\r\ng",
    "quotes": "O'Brien \"the\" `tick` ’curly’ ''",
    "unicode": "Ünïcødé 🙂 日本語 עברית \u202eRTL\u202c zero\u200bwidth e\u0301 \ufeffbom",
    "control": "bell\x07 esc\x1b[31m vt\x0b del\x7f",
    "huge": LONG_TEXT,
}


@dataclass
class FuzzRows:
    """Raw rows of one table, the load each goes into, and the expected outcome of every cleaned key."""

    table: str
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (load number, raw row)
    expected: dict[str, str] = field(default_factory=dict)  # cleaned key -> "staged" or the rejection reason

    def add(self, expect: str, load: int = 1, **values: str) -> None:
        row = {**base_row(self.table), **values}
        self.rows.append((load, row))
        key = clean_key(row[KEYS[self.table]])
        if key is not None:
            self.expected[key] = expect


def junk_values() -> set[str]:
    project = yaml.safe_load((PROJECT_ROOT / "dbt_project.yml").read_text())
    return {"", *(str(v).strip().lower() for v in project["vars"]["junk_identifier_values"])}


def clean_key(value: str) -> str | None:
    """The documented key cleaning: surrounding whitespace trimmed, empty or junk placeholders mean no key."""
    stripped = value.strip(WHITESPACE)
    return None if stripped.lower() in junk_values() else stripped


def base_row(table: str) -> dict[str, str]:
    """A valid row; the fuzz cases overwrite one or two values of it."""
    ts = iso(NOW - timedelta(days=2))
    rows = {
        "links": dict(short_code="sc", campaign_id="camp", creator_id="cr", channel="instagram",
                      destination_url="https://shop.example/p", created_at=iso(NOW - timedelta(days=9))),
        "clicks": dict(link_id="L-fuzz", clicked_at=ts, ip="198.51.100.10", referrer="https://t.co/x",
                       user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36",
                       cookie_id="ck", session_id="s", device_fingerprint="fp", user_id="u", email="a@example.org"),
        "conversions": dict(converted_at=ts, event_type="purchase", revenue="10.00", currency="EUR", user_id="u",
                            email="a@example.org", cookie_id="ck", session_id="s", device_fingerprint="fp",
                            ip="198.51.100.10", user_agent="Mozilla/5.0 (Windows NT 10.0) Chrome/120.0", click_id=""),
    }  # fmt: skip
    return {**dict.fromkeys(RAW_COLUMNS[table], ""), **rows[table]}


def expected_outcome(table: str, column: str) -> str:
    """Where hostile text in ``column`` lands: only validated columns turn it into a rejection."""
    if column == EVENT_TIME[table]:
        return f"invalid_{column}"
    if table == "conversions" and column in ("revenue", "currency"):
        return f"invalid_{column}"
    return STAGED_OK


def time_cases(table: str) -> list[tuple[str, str]]:
    """(raw event time, expected outcome): ISO 8601 in any offset is valid, anything else is not."""
    column = EVENT_TIME[table]
    return [
        (iso(NOW - timedelta(days=3)), STAGED_OK),
        (iso(NOW - timedelta(days=3), 5.5), STAGED_OK),
        ((NOW - timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S"), STAGED_OK),
        (f"  {iso(NOW - timedelta(days=3), -8)}  ", STAGED_OK),
        (iso(NOW + timedelta(hours=2)), STAGED_OK),  # clock skew within var future_tolerance_hours
        ("2026-02-30T10:00:00Z", f"invalid_{column}"),
        ("2026-11-20T25:00:00Z", f"invalid_{column}"),
        ("2026/11/20 10:00:00", f"invalid_{column}"),
        ("20/11/2026 10:00", f"invalid_{column}"),
        ("1764000000", f"invalid_{column}"),
        ("now", f"invalid_{column}"),
        ("infinity", f"invalid_{column}"),
        ("yesterday", f"invalid_{column}"),
        ("2999-01-01T00:00:00Z", f"future_{column}"),
        (iso(NOW + timedelta(days=3)), f"future_{column}"),
        ("", STAGED_OK if table == "links" else f"missing_{column}"),  # a link may lack its creation time
    ]


REVENUE_CASES = [
    ("NaN", "invalid_revenue"),
    ("nan", "invalid_revenue"),
    ("Infinity", "invalid_revenue"),
    ("-Infinity", "invalid_revenue"),
    ("1,000.00", "invalid_revenue"),
    ("$10", "invalid_revenue"),
    ("1e300", "invalid_revenue"),  # beyond numeric(38, 6): not a representable amount
    ("-5", "negative_revenue"),
    ("-0.01", "negative_revenue"),
    ("99999999999", "revenue_too_large"),
    ("1000000000.01", "revenue_too_large"),
    ("1000000000", STAGED_OK),
    (" 12.50 ", STAGED_OK),
    ("12.345", STAGED_OK),
    ("0", STAGED_OK),
    ("", STAGED_OK),  # no revenue (a signup)
]
# (revenue, currency, outcome): a currency is an ISO 4217 code of the seed, never assumed.
CURRENCY_CASES = [
    ("10.00", "", "missing_currency"),
    ("10.00", "XXX", "invalid_currency"),
    ("10.00", "ABC", "invalid_currency"),
    ("10.00", "XAU", "invalid_currency"),  # gold is not money here
    ("10.00", " usd ", STAGED_OK),
    ("0", "", STAGED_OK),  # a zero amount needs no currency
    ("", "", STAGED_OK),
    ("", "XXX", "invalid_currency"),
]
# raw.fx_rates: (load, rate_date, currency, rate, outcome of the key 'CUR|day'; keyless rows by their reason).
FX_CASES = [
    (1, "2026-10-01", " eur ", "1.08", STAGED_OK),
    (1, "2026-10-02", "EUR", "1.07", STAGED_OK),
    (2, "2026-10-02", "EUR", "1.075", STAGED_OK),  # a later load corrects the rate
    (1, "2026-10-09", "GBP", "1.2", STAGED_OK),
    (2, "2026-10-09", "GBP", "junk", STAGED_OK),  # a corrupt re-delivery never erases a good rate
    (1, "2026-10-07", "USD", "1", STAGED_OK),  # the base currency may have rows, at 1
    (1, "2026-10-06", "USD", "1.1", "base_currency_rate_not_one"),
    (1, "2026-10-03", "GBP", "abc", "invalid_rate"),
    (1, "2026-10-03", "XXX", "1.0", "invalid_currency"),
    (1, "2026-10-04", "GBP", "-1", "rate_out_of_range"),
    (1, "2026-10-05", "GBP", "0", "rate_out_of_range"),
    (1, "2026-10-06", "GBP", "", "missing_rate"),
    (1, "2026-02-30", "GBP", "1.2", "invalid_rate_date"),
    (1, "10/08/2026", "GBP", "1.2", "invalid_rate_date"),
    (1, "", "GBP", "1.2", "missing_rate_date"),
    (1, "2026-10-08", "", "1.2", "missing_currency"),
]
# raw.spend: (load, spend_date, link_id, campaign_id, creator_id, channel, amount, currency, outcome of the key
# 'entity_type|entity|day|CUR'; keyless rows by their reason).
SPEND_CASES = [
    (1, "2026-10-01", "", "", "crt_1", "", "40.00", " eur ", STAGED_OK),
    (1, "2026-10-01", "lnk_1", "", "", "", "1.50", "USD", STAGED_OK),
    (1, "2026-10-02", "", "", "", "TikTok", "10", "USD", STAGED_OK),
    (2, "2026-10-02", "", "", "", "tiktok", "12.5", "USD", STAGED_OK),  # a later load corrects the day's total
    (1, "2026-10-03", "", "cmp_1", "", "", "0", "GBP", STAGED_OK),  # nothing spent is an amount
    (1, "2026-10-03", "", "", "crt_2", "", "-5", "USD", "negative_amount"),
    (1, "2026-10-03", "", "", "crt_3", "", "abc", "USD", "invalid_amount"),
    (1, "2026-10-03", "", "", "crt_4", "", "", "USD", "missing_amount"),
    (1, "2026-10-03", "", "", "crt_5", "", "5", "XXX", "invalid_currency"),
    (1, "2026-10-03", "", "", "crt_6", "", "5", "", "missing_currency"),
    (1, "2026-10-03", "", "", "crt_7", "", "5", "ZZZ", "invalid_currency"),
    (1, "2026-10-04", "", "", "crt_8", "", "2000000000", "USD", "amount_too_large"),
    (1, "2026-10-03", "", "", "", "", "5", "USD", "missing_entity"),
    (1, "2026-10-03", "null", " ", "", "", "5", "USD", "missing_entity"),
    (1, "2026-10-03", "lnk_2", "", "crt_9", "", "5", "USD", "multiple_entities"),
    (1, "", "", "", "crt_9", "", "5", "USD", "missing_spend_date"),
    (1, "2026-13-01", "", "", "crt_9", "", "5", "USD", "invalid_spend_date"),
]
SPEND_KEYLESS = ("missing_spend_date", "invalid_spend_date", "missing_entity", "multiple_entities")
MISSING_KEYS = ["", "   ", "null", "NULL", "undefined", "N/A", "-", "\t", " \t\n "]


def fuzz_world() -> dict[str, FuzzRows]:
    """Every case of the matrix, per raw table, spread over two loads."""
    world = {table: FuzzRows(table) for table in KEYS}
    for table, rows in world.items():
        key = KEYS[table]
        for column in RAW_COLUMNS[table]:
            for name, text in NASTY.items():
                if column == key:
                    rows.add(STAGED_OK, **{key: text})  # hostile text is a fine key, as long as it is one
                else:
                    rows.add(expected_outcome(table, column), **{key: f"{table}-{column}-{name}", column: text})
        for i, (value, expect) in enumerate(time_cases(table)):
            rows.add(expect, **{key: f"{table}-time-{i}", EVENT_TIME[table]: value})
        for value in MISSING_KEYS:
            rows.add("missing_key", **{key: value})
        add_duplicates(rows)
    for i, (value, expect) in enumerate(REVENUE_CASES):
        world["conversions"].add(expect, conversion_id=f"rev-{i}", revenue=value)
    for i, (revenue, currency, expect) in enumerate(CURRENCY_CASES):
        world["conversions"].add(expect, conversion_id=f"cur-{i}", revenue=revenue, currency=currency)
    for i, value in enumerate(["", "null", "  "]):
        world["clicks"].add("missing_link_id", click_id=f"nolink-{i}", link_id=value)
    return world


def add_duplicates(rows: FuzzRows) -> None:
    """At-least-once delivery: repeats, versions, padded and differently-cased keys, across two loads."""
    key, column = KEYS[rows.table], EVENT_TIME[rows.table]
    bad, future = "garbage", "2999-01-01T00:00:00Z"
    for _ in range(3):
        rows.add(STAGED_OK, **{key: "dup-identical"})
    rows.add(STAGED_OK, **{key: "dup-mixed", column: bad})
    rows.add(STAGED_OK, **{key: "dup-mixed"})  # a valid version beats invalid ones, whatever the order
    rows.add(STAGED_OK, load=2, **{key: "dup-mixed", column: bad})
    rows.add(f"invalid_{column}", **{key: "dup-invalid", column: bad})
    rows.add(f"future_{column}", load=2, **{key: "dup-invalid", column: future})  # the latest invalid version
    rows.add(STAGED_OK, **{key: " dup-padded "})
    rows.add(STAGED_OK, load=2, **{key: "dup-padded"})
    rows.add(STAGED_OK, **{key: "Dup-Case"})
    rows.add(STAGED_OK, **{key: "dup-case"})
    rows.add(STAGED_OK, **{key: "dup-across-loads"})
    rows.add(STAGED_OK, load=2, **{key: "dup-across-loads"})


def write_loads(world: dict[str, FuzzRows], root: Path) -> list[Path]:
    """One folder per load; the folder name itself is hostile (it lands in _source_file)."""
    folders = []
    for load in (1, 2):
        folder = root / f'load {load} it\'s; drop "table" [x] ünï'
        folder.mkdir(parents=True)
        for table, rows in world.items():
            with open(folder / f"{table}.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(RAW_COLUMNS[table]))
                writer.writeheader()
                writer.writerows(row for n, row in rows.rows if n == load)
        with open(folder / "fx_rates.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(RAW_COLUMNS["fx_rates"])
            writer.writerows(case[1:4] for case in FX_CASES if case[0] == load)
        with open(folder / "spend.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(RAW_COLUMNS["spend"])
            writer.writerows(case[1:8] for case in SPEND_CASES if case[0] == load)
        folders.append(folder)
    return folders


@dataclass
class FuzzRun:
    world: dict[str, FuzzRows]
    raw_counts: dict[str, int]
    staged: dict[str, pd.DataFrame]
    rejected: pd.DataFrame


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def fuzz_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzRun]:
    """The fuzz matrix loaded in two loads and staged once (models and data tests; unit tests run elsewhere)."""
    work = tmp_path_factory.mktemp(f"fuzz_{request.param}")
    world = fuzz_world()
    with module_target(request.param, work, prefix="attr_fuzz") as target:
        wh = Warehouse(target)
        for folder in write_loads(world, work / "in"):
            load_folder(wh, folder)
        run_dbt(target, "build", "--select", "staging", "--exclude-resource-type", "unit_test",
                target_path=work / "dbt_target")  # fmt: skip
        with wh.connect() as conn:
            counts = {t: int(wh.scalar(f"select count(*) from raw.{t}", conn)) for t in (*world, "spend")}
            staged = {t: wh.query_df(f"select * from staging.{m}", conn) for t, m in STAGED.items()}
            staged["fx_rates"] = wh.query_df("select * from staging.stg_raw__fx_rates", conn)
            staged["spend"] = wh.query_df("select * from staging.stg_raw__spend", conn)
            rejected = wh.query_df("select * from staging.rejected_rows", conn)
        yield FuzzRun(world, counts, staged, rejected)


def test_bad_input_loads_every_row(fuzz_run: FuzzRun) -> None:
    """The loader keeps every delivered row, whatever its text (the CSV parser must not split or drop any)."""
    delivered = {t: len(rows.rows) for t, rows in fuzz_run.world.items()}
    assert fuzz_run.raw_counts == {**delivered, "spend": len(SPEND_CASES)}


@pytest.mark.parametrize("table", list(KEYS))
def test_bad_input_every_raw_key_is_staged_or_rejected(fuzz_run: FuzzRun, table: str) -> None:
    """distinct raw keys = staged keys + rejected keys, disjoint; every keyless raw row is one rejected row.

    A key is the raw value with surrounding whitespace trimmed; an empty value or a junk placeholder (var
    junk_identifier_values) is no key. Rows without a key cannot be deduplicated, so each one is quarantined.
    """
    rows = fuzz_run.world[table]
    raw_keys = [clean_key(row[KEYS[table]]) for _, row in rows.rows]
    distinct = {k for k in raw_keys if k is not None}
    staged = list(fuzz_run.staged[table][KEYS[table]])
    rejected = fuzz_run.rejected[fuzz_run.rejected["source_table"] == table]
    keyed = [k for k in rejected["record_key"] if isinstance(k, str)]
    keyless = rejected[rejected["record_key"].isna()]

    assert len(staged) == len(set(staged)) and len(keyed) == len(set(keyed)), "a key appears twice"
    assert set(staged).isdisjoint(keyed), "keys both staged and rejected"
    assert len(distinct) == len(staged) + len(keyed)
    assert set(staged) | set(keyed) == distinct, "keys lost or invented"
    assert len(keyless) == sum(k is None for k in raw_keys)
    assert set(keyless["reason"]) == {"missing_key"}


@pytest.mark.parametrize("table", list(KEYS))
def test_bad_input_outcome_of_every_key(fuzz_run: FuzzRun, table: str) -> None:
    """Each key is staged, or rejected with the documented reason of its best version."""
    rejected = fuzz_run.rejected[fuzz_run.rejected["source_table"] == table].dropna(subset=["record_key"])
    actual = dict.fromkeys(fuzz_run.staged[table][KEYS[table]], STAGED_OK)
    actual.update(zip(rejected["record_key"], rejected["reason"], strict=True))
    expected = fuzz_run.world[table].expected
    wrong = {k[:60]: (expected.get(k), actual.get(k)) for k in expected.keys() | actual.keys()
             if expected.get(k) != actual.get(k)}  # fmt: skip
    assert not wrong, f"{table}: key -> (expected, actual): {wrong}"


def test_bad_input_fx_rates_staged_or_rejected_with_reasons(fuzz_run: FuzzRun) -> None:
    """Each rate key (currency and day) is staged with its winning version or rejected with its reason."""
    staged = fuzz_run.staged["fx_rates"].set_index("fx_rate_id")
    rejected = fuzz_run.rejected[fuzz_run.rejected["source_table"] == "fx_rates"]
    keyed = rejected.dropna(subset=["record_key"])
    actual = {**dict.fromkeys(staged.index, STAGED_OK), **dict(zip(keyed["record_key"], keyed["reason"], strict=True))}
    expected, keyless = {}, []
    for _, day, currency, _, outcome in FX_CASES:
        code = currency.strip().upper()
        if outcome in ("invalid_rate_date", "missing_rate_date", "missing_currency"):
            keyless.append(outcome)
        else:
            expected[f"{code}|{day}"] = outcome
    assert actual == expected
    assert sorted(rejected.loc[rejected["record_key"].isna(), "reason"]) == sorted(keyless)
    assert float(staged.loc["EUR|2026-10-02", "rate"]) == 1.075 and float(staged.loc["GBP|2026-10-09", "rate"]) == 1.2


def test_bad_input_spend_staged_or_rejected_with_reasons(fuzz_run: FuzzRun) -> None:
    """Each spend key (entity, day, currency) is staged with its winning version or rejected with its reason:
    negative, unreadable, missing or implausible amounts, unknown or missing currencies; rows without a day or
    without exactly one entity are rejected one by one. Every raw row is accounted for."""
    staged = fuzz_run.staged["spend"].set_index("spend_id")
    rejected = fuzz_run.rejected[fuzz_run.rejected["source_table"] == "spend"]
    keyed = rejected.dropna(subset=["record_key"])
    actual = {**dict.fromkeys(staged.index, STAGED_OK), **dict(zip(keyed["record_key"], keyed["reason"], strict=True))}
    expected, keyless = {}, []
    for _, day, link, campaign, creator, channel, _, currency, outcome in SPEND_CASES:
        if outcome in SPEND_KEYLESS:
            keyless.append(outcome)
            continue
        given = zip(("link_id", "campaign_id", "creator_id", "channel"), (link, campaign, creator, channel.lower()),
                    strict=True)  # fmt: skip
        entity_type, entity = next((t, v) for t, v in given if v)
        expected[f"{entity_type}|{entity}|{day}|{currency.strip().upper()}"] = outcome
    assert actual == expected
    assert sorted(rejected.loc[rejected["record_key"].isna(), "reason"]) == sorted(keyless)
    assert rejected["reason"].value_counts().to_dict() == {
        "invalid_currency": 2, "missing_entity": 2, "negative_amount": 1, "invalid_amount": 1, "missing_amount": 1,
        "missing_currency": 1, "amount_too_large": 1, "multiple_entities": 1, "missing_spend_date": 1,
        "invalid_spend_date": 1,
    }  # fmt: skip
    assert float(staged.loc["channel|tiktok|2026-10-02|USD", "amount"]) == 12.5
    assert float(staged.loc["creator_id|crt_1|2026-10-01|EUR", "amount"]) == 40.0


def test_bad_input_text_survives_unchanged(fuzz_run: FuzzRun) -> None:
    """Hostile text in free-text and identifier columns is stored as delivered (trimmed, capped), never run."""
    clicks = fuzz_run.staged["clicks"].set_index("click_id")
    links = fuzz_run.staged["links"].set_index("link_id")
    for name, text in NASTY.items():
        assert clicks.loc[f"clicks-cookie_id-{name}", "cookie_id"] == text.strip(WHITESPACE), name
        assert clicks.loc[f"clicks-user_agent-{name}", "user_agent"] == text.strip(WHITESPACE)[:1000], name
        assert links.loc[f"links-destination_url-{name}", "destination_url"] == text.strip(WHITESPACE), name
    assert clicks.loc["clicks-referrer-huge", "referrer"] == LONG_TEXT[:2000]


def test_bad_input_quarantine_payloads_are_json(fuzz_run: FuzzRun) -> None:
    """raw_payload is strict JSON (control characters escaped), names the file and caps each value."""
    for payload in fuzz_run.rejected["raw_payload"]:
        doc = json.loads(payload)  # strict: raw control characters inside strings are an error
        assert 'drop "table" [x]' in doc["_source_file"]
        assert all(v is None or len(v) <= 1000 for v in doc.values())


# ------------------------------------------------------------------------------------------------ pipeline ---
# One scenario per target, run once and inspected by the tests below (every step is a real pipeline run; each
# full run costs ~4 dbt invocations, so the steps are chained rather than repeated):
#   1. a clean run of a small world whose days end yesterday (so the schedules' windows hold data); raw backed up;
#      the end-to-end facts are read, then the same files are loaded again (at-least-once delivery);
#   2. a crash: attribution dies mid-write (after rewriting the credits and deleting the facts' rows), then a
#      plain rerun;
#   3. disaster recovery: schema raw is lost, restored from the backup, and `run --full-refresh` (what
#      `attribution restore` prescribes) rebuilds everything from raw; on PostgreSQL a reader watches every mart
#      and Python table meanwhile;
#   4. a click that arrived late is loaded; the hourly schedule ticks and its run executes as requested.
WORLD_DAYS = 10
WORLD = WorldConfig(
    persons=300,
    seed=7,
    days=WORLD_DAYS,
    start=(WORLD_NOW.date() - timedelta(days=WORLD_DAYS + 1)).isoformat(),
    # Three currencies in earnest (and the generator's add_to_cart events), for the reports' money check.
    currency_probs=(("USD", 0.5), ("EUR", 0.25), ("GBP", 0.25)),
)
# GBP rates stop three days before the conversions start: conversions of the last days find none within var
# fx_max_rate_age_days and must be counted, not summed.
GBP_RATES_END = (date.fromisoformat(WORLD.start) - timedelta(days=3)).isoformat()
ATTRIBUTION_KEYS = (ATTRIBUTION_CREDITS, CONVERSION_ATTRIBUTION)
# Every table the Python assets write (schema intermediate), from their specs: readers must never miss one.
PYTHON_TABLES = tuple(sorted({key.path[-1] for asset in PYTHON_ASSETS for key in asset.keys}))
# What the hourly identity merges added since the last re-fit: nothing right after one, so empty is their normal
# state (never missing, though).
EMPTY_AFTER_REFIT = {IDENTITY_ADDED_NODES.path[-1], IDENTITY_FORWARDS.path[-1]}


class SimulatedCrash(Exception):
    """The attribution step dying between two statements of its write (a kill, an OOM, a lost connection)."""


@dataclass(frozen=True)
class LateClick:
    conversion_id: str
    click_id: str
    conversion_day: str


def pick_late_click(world: dict[str, pd.DataFrame]) -> LateClick:
    """A conversion of a few days ago whose direct click id names its true last click: that click arrives late."""
    conversions = world["conversions"].merge(world["truth_conversions"], on="conversion_id")
    days = conversions["converted_at"].str[:10]
    window = (days >= (WORLD_NOW.date() - timedelta(days=8)).isoformat()) & (
        days <= (WORLD_NOW.date() - timedelta(days=3)).isoformat()
    )
    logged = conversions["click_id"].isin(set(world["clicks"]["click_id"]))
    chosen = conversions[window & logged & (conversions["click_id"] == conversions["true_last_click_id"])]
    assert len(chosen), "the world has no conversion whose direct click is its true last click"
    row = chosen.sort_values("conversion_id").iloc[0]
    return LateClick(row["conversion_id"], row["click_id"], row["converted_at"][:10])


def write_worlds(root: Path) -> tuple[Path, Path, LateClick]:
    """The world without the late click, and a folder holding only that click."""
    world = generate_world(WORLD)
    late = pick_late_click(world)
    clicks = world["clicks"]
    is_late = clicks["click_id"] == late.click_id
    rates = world["fx_rates"]
    rates = rates[(rates["currency"] != "GBP") | (rates["rate_date"] <= GBP_RATES_END)]
    write_world({**world, "clicks": clicks[~is_late], "fx_rates": rates}, root / "world")
    late_dir = root / "late"
    late_dir.mkdir()
    clicks[is_late].to_csv(late_dir / "clicks.csv", index=False)
    return root / "world", late_dir, late


def python_checksums(
    wh: Warehouse, tables: tuple[str, ...] = ("attribution_credits", "conversion_attribution")
) -> dict[str, str]:
    with wh.connect() as conn:
        return {t: frame_checksum(wh.query_df(f"select * from intermediate.{t}", conn)) for t in tables}


# The facts' rows that are credited: events of the configured conversion types (other events get no credit), whose
# revenue is split in the reporting currency.
CREDITED = "join intermediate.int_conversions v on v.conversion_id = f.conversion_id and v.is_conversion"


def conservation_violations(wh: Warehouse, facts: str, credits: str) -> list[str]:
    """Credit conservation read directly: every credited conversion of ``facts`` has shares summing to 1 per model,
    no credit row points at a conversion missing from ``facts``, and per model the converted revenue is conserved
    to the cent."""
    sql = {
        "share": f"""
            select count(*) from {facts} f {CREDITED} cross join (select distinct model from {credits}) m
            left join (select conversion_id, model, sum(credit_share) as total from {credits} group by 1, 2) s
                on s.conversion_id = f.conversion_id and s.model = m.model
            where s.total is null or abs(s.total - 1) > 1e-6""",
        "orphan": f"""
            select count(*) from {credits} c where not exists
                (select 1 from {facts} f where f.conversion_id = c.conversion_id)""",
        "revenue": f"""
            select count(*) from (select model, sum(credit_revenue) as credited from {credits} group by model) m
            where abs(m.credited - (
                select coalesce(sum(coalesce(v.reporting_revenue, 0)), 0) from {facts} f {CREDITED}
            )) >= 0.005""",
    }
    with wh.connect() as conn:
        found = {name: int(wh.scalar(q, conn)) for name, q in sql.items()}
    return [f"{name}: {n}" for name, n in found.items() if n]


def conversions_count(wh: Warehouse) -> int:
    return int(wh.scalar("select count(*) from staging.stg_raw__conversions"))


def crash_attribution_mid_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the attribution step die right after it deleted the facts' rows of its window (credits rewritten)."""
    execute = Warehouse.execute

    def execute_then_die(self: Warehouse, sql: str, conn: object = None) -> None:
        execute(self, sql, conn)
        if sql.startswith('delete from "intermediate"."conversion_attribution"'):
            raise SimulatedCrash("attribution killed after deleting intermediate.conversion_attribution rows")

    monkeypatch.setattr(Warehouse, "execute", execute_then_die)


def run_from_attribution(target: Target, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The attribution step and everything downstream, over every data day (what a full run executes from there
    on; the steps before it rebuild the same tables from the same raw rows)."""
    defs = load_definitions(target)
    job = defs.resolve_job_def("attribution_all")
    keys = dg.AssetSelection.assets(*ATTRIBUTION_KEYS).downstream().resolve(defs.resolve_asset_graph())
    return job.execute_in_process(
        instance=instance, tags=data_partition_range(target, job), asset_selection=list(keys), raise_on_error=False
    )


@dataclass
class ReaderLog:
    loops: int = 0
    problems: list[str] = field(default_factory=list)
    relations: dict[str, set[int]] = field(default_factory=dict)  # table -> OIDs of the relations read


CONSISTENCY_SQL = """
select (select count(*) from staging.stg_raw__conversions),
       (select count(*) from marts.fct_conversion_attribution),
       (select count(*) from intermediate.conversion_attribution),
       (select count(distinct conversion_id) from marts.fct_attribution_credits)
       + (select count(*) from marts.fct_conversion_attribution where not is_conversion)
"""


class RefreshReader:
    """A BI-like reader on PostgreSQL (autocommit, one statement at a time) looping over every mart and Python
    table while a run rebuilds them; it records every empty or missing table and every statement in which the
    facts do not cover exactly the staged conversions."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.log = ReaderLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="refresh-reader", daemon=True)

    def __enter__(self) -> ReaderLog:
        self._thread.start()
        return self.log

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _loop(self) -> None:
        import psycopg2

        conn = psycopg2.connect(**self.target.postgres.dsn_kwargs())
        conn.autocommit = True
        tables = [("marts", m) for m in MARTS] + [("intermediate", t) for t in PYTHON_TABLES]
        try:
            while not self._stop.is_set():
                with conn.cursor() as cur:
                    for schema, table in tables:
                        self._read(cur, schema, table)
                    self._check_consistency(cur)
                self.log.loops += 1
                # ~8 passes a second: enough to land inside any non-atomic window (a swap outside its
                # transaction leaves a table missing for a whole build), without competing with the run itself.
                time.sleep(0.1)
        finally:
            conn.close()

    def _read(self, cur: Any, schema: str, table: str) -> None:
        import psycopg2

        name = f"{schema}.{table}"
        try:
            cur.execute(f"select count(*), min(tableoid) from {name}")
            count, oid = cur.fetchone()
        except psycopg2.Error as exc:
            self.log.problems.append(f"{name}: {type(exc).__name__}: {str(exc).strip()}")
            return
        relations = self.log.relations.setdefault(name, set())
        if count:
            relations.add(int(oid))
        elif table not in EMPTY_AFTER_REFIT:
            self.log.problems.append(f"{name}: empty")

    def _check_consistency(self, cur: Any) -> None:
        cur.execute(CONSISTENCY_SQL)
        counts = cur.fetchone()
        if len(set(counts)) != 1:
            self.log.problems.append(f"staged, fct, intermediate and credited conversions differ: {counts}")


@dataclass
class PublishedLog:
    """What a BI reader in another process saw of the published marts during one run."""

    before: list[str] | None = None  # signature of the published marts before the run (None: none published yet)
    after: list[str] | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)
    equals_marts: bool = False  # the published copy equals the marts the run built


def published_signature(target: Target) -> list[str] | None:
    """One-statement signature (per mart: rows and a hash of every row) of the published marts, or None."""
    if target.is_duckdb:
        import duckdb

        if not target.published_duckdb_path.exists():
            return None
        with duckdb.connect(str(target.published_duckdb_path), read_only=True) as conn:
            return duckdb_signature(conn, list(MARTS))
    import psycopg2

    with psycopg2.connect(**target.postgres.dsn_kwargs()) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from pg_catalog.pg_namespace where nspname = %s", (PUBLISHED_SCHEMA,))
        return postgres_signature(cur, PUBLISHED_SCHEMA, list(MARTS)) if cur.fetchone()[0] else None


class PublishedReader:
    """tests/published_reader.py in processes of their own (a fresh connection per pass and, on DuckDB, one held
    open), polling the published marts while a run replaces them; on exit it waits for the fresh reader to see
    the run's snapshot, stops them and collects what they saw."""

    def __init__(self, target: Target, folder: Path) -> None:
        self.target = target
        self.log = PublishedLog()
        folder.mkdir(parents=True, exist_ok=True)
        self.lines, self.stop = folder / "reader.jsonl", folder / "stop"
        if target.is_duckdb:
            location = str(target.published_duckdb_path)
        else:
            location = json.dumps({**target.postgres.dsn_kwargs(), "schema": PUBLISHED_SCHEMA})
        modes = ("fresh", "held") if target.is_duckdb else ("fresh",)
        self.commands = [
            [
                sys.executable,
                "-m",
                "tests.published_reader",
                mode,
                target.name,
                location,
                ",".join(MARTS),
                str(folder / f"{mode}.jsonl"),
                str(self.stop),
            ]  # fmt: skip
            for mode in modes
        ]
        self.logs = [folder / f"{mode}.jsonl" for mode in modes]

    def _seen(self) -> list[dict[str, Any]]:
        return [json.loads(line) for log in self.logs if log.exists() for line in log.read_text().splitlines()]

    def __enter__(self) -> PublishedLog:
        self.log.before = published_signature(self.target)
        self.processes = [subprocess.Popen(command, cwd=PROJECT_ROOT) for command in self.commands]
        deadline = time.monotonic() + 60
        # Every reader is on the published marts before the run starts.
        while len({entry["kind"] for entry in self._seen()}) < len(self.commands) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.log

    def __exit__(self, *exc: object) -> None:
        try:
            self.log.after = published_signature(self.target)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                fresh = [e for e in self._seen() if e["kind"] == "fresh"]
                if fresh and fresh[-1]["signature"] == self.log.after:
                    break
                time.sleep(0.1)
            self.log.equals_marts = published_checksums(self.target) == mart_checksums(Warehouse(self.target))
        finally:
            self.stop.touch()
            for process in self.processes:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
            self.log.seen = sorted(self._seen(), key=lambda entry: entry["at"])


PII_VALUES = """
    select email as value from raw.clicks where email <> '' union select ip from raw.clicks where ip <> ''
    union select email from raw.conversions where email <> '' union select ip from raw.conversions where ip <> ''
"""


@dataclass(frozen=True)
class EndToEnd:
    """What the clean run produced, beyond checksums: counts, models, the evaluation and any PII leak."""

    conversions: int
    facts: int
    attributed: int
    models: frozenset[str]
    reconciliation: dict[str, float]  # data-driven model -> largest relative gap of a channel's credits to its fit
    evaluation: dict[str, Any]
    evaluation_text: str
    text_columns: int
    pii_leaks: list[str]


def raw_pii_leaks(wh: Warehouse) -> tuple[int, list[str]]:
    """Text columns of intermediate and marts scanned, and those holding a raw email or IP value."""
    with wh.connect() as conn:
        columns = wh.query_df(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_schema in ('intermediate', 'marts') and data_type in ('text', 'character varying', 'VARCHAR')",
            conn,
        )
        leaks = []
        for schema, table, column in columns.itertuples(index=False):
            n = wh.scalar(f'select count(*) from "{schema}"."{table}" where "{column}" in ({PII_VALUES})', conn)
            if n:
                leaks.append(f"{schema}.{table}.{column}: {n}")
    return len(columns), leaks


def end_to_end_facts(wh: Warehouse, world_dir: Path) -> EndToEnd:
    with wh.connect() as conn:
        conversions = int(wh.scalar("select count(*) from staging.stg_raw__conversions", conn))
        facts = int(wh.scalar("select count(*) from marts.fct_conversion_attribution", conn))
        attributed = int(wh.scalar("select count(*) from marts.fct_conversion_attribution where is_attributed", conn))
        models = frozenset(wh.query_df("select distinct model from marts.fct_attribution_credits", conn)["model"])
        reconciliation = reconciliation_gaps(wh, conn)
    evaluation, text = evaluate_warehouse(wh, world_dir)
    n_columns, leaks = raw_pii_leaks(wh)
    return EndToEnd(conversions, facts, attributed, models, reconciliation, evaluation, text, n_columns, leaks)


# Per conversion of the channel fit's window, each data-driven model's credit per channel.
WINDOW_CREDITS_SQL = """
select c.model, c.conversion_id, coalesce(c.channel, '(unknown)') as grain_value, sum(c.credit_share) as credit
from marts.fct_attribution_credits c
cross join intermediate.int_channel_fit_window w
where not c.is_unattributed and c.model in ('markov', 'shapley')
  and (w.starts_after is null or c.conversion_date > w.starts_after)
group by 1, 2, 3
"""


def reconciliation_gaps(wh: Warehouse, conn: object) -> dict[str, float]:
    """Per data-driven model, the largest relative gap between a channel's credits (fct_attribution_credits,
    conversions of the fit window) and the fit's total (channel_weights.weight x the conversions credited).

    Not every total can be reached (python_models/attribution/allocation.py): a channel whose credits sit at a
    bound (everything of every conversion it is on, or only the conversions it is alone on) is as close to its
    total as any split gets, and the other channels share the rest in proportion to their totals; the gap is
    measured against that proportion."""
    credits = wh.query_df(WINDOW_CREDITS_SQL, conn).astype({"credit": "float64"})
    weights = wh.query_df("select model, grain_value, weight from intermediate.channel_weights", conn)
    gaps = {}
    for model, rows in credits.groupby("model"):
        mass = rows.groupby("conversion_id")["credit"].sum()
        sizes = rows.groupby("conversion_id")["grain_value"].nunique()
        on = rows.assign(mass=rows["conversion_id"].map(mass), alone=rows["conversion_id"].map(sizes) == 1)
        reached = on.groupby("grain_value")["credit"].sum()
        upper = on.groupby("grain_value")["mass"].sum()
        lower = on[on["alone"]].groupby("grain_value")["mass"].sum().reindex(reached.index, fill_value=0.0)
        fitted = weights[weights["model"] == model].set_index("grain_value")["weight"].astype("float64") * mass.sum()
        reached, upper, lower = (x.reindex(fitted.index, fill_value=0.0) for x in (reached, upper, lower))
        at_bound = np.isclose(reached, upper, rtol=1e-6) & (fitted > upper) | np.isclose(reached, lower, rtol=1e-6) & (
            fitted < lower
        )
        # The others share what the bound ones leave: each at its fitted total times one common factor (1 when
        # no channel is at a bound, as the totals and the credits add up to the same conversions).
        free = ~at_bound
        common = reached[free].sum() / fitted[free].sum()
        gap = (reached[free] / (fitted[free] * common) - 1).abs()
        gaps[str(model)] = float(gap.max()) if len(gap) else 0.0
    return gaps


@dataclass
class Scenario:
    target: Target
    late: LateClick
    conversions: int = 0
    clean: dict[str, str] = field(default_factory=dict)
    golden: dict[str, str] = field(default_factory=dict)
    python_before: dict[str, str] = field(default_factory=dict)
    crash: dg.ExecuteInProcessResult | None = None
    crashed_marts: dict[str, str] = field(default_factory=dict)
    crashed_python: dict[str, str] = field(default_factory=dict)
    crashed_violations: dict[str, list[str]] = field(default_factory=dict)
    end_to_end: EndToEnd | None = None
    rerun: dict[str, str] = field(default_factory=dict)
    raw_before: dict[str, str] = field(default_factory=dict)
    raw_restored: dict[str, str] = field(default_factory=dict)
    rebuilt: dict[str, str] = field(default_factory=dict)
    readers: dict[str, ReaderLog] = field(default_factory=dict)  # phase -> what the reader saw (PostgreSQL)
    published: dict[str, PublishedLog] = field(default_factory=dict)  # phase -> what a BI process saw
    rebuilt_run_id: str = ""
    hourly_tags: dict[str, str] = field(default_factory=dict)  # what the schedule requested
    hourly_run_tags: dict[str, str] = field(default_factory=dict)  # the run's, with its job's
    # Per run: each materialized asset's metadata labels (the hourly run's name what waits for the daily job).
    metadata_labels: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    published_copied: dict[str, str] = field(default_factory=dict)  # per run: what its publish says it copied
    late_before: pd.DataFrame | None = None
    late_after: pd.DataFrame | None = None
    late_violations: list[str] = field(default_factory=list)
    money: MoneyCheck | None = None
    incremental_vs_full: dict[str, tuple[str, str]] = field(default_factory=dict)


def late_credits(wh: Warehouse, late: LateClick) -> pd.DataFrame:
    """The late conversion's fact row joined to its credit rows (model, click_id, credit_share)."""
    return wh.query_df(
        "select f.candidate_click_id, f.attributed_click_id, f.confidence_score, c.model, c.click_id, c.credit_share "
        "from marts.fct_conversion_attribution f join marts.fct_attribution_credits c using (conversion_id) "
        f"where f.conversion_id = '{late.conversion_id}'"
    )


@contextlib.contextmanager
def watching(target: Target, s: Scenario, phase: str, folder: Path) -> Iterator[None]:
    """Readers during one run: a BI process on the published marts (both targets) and, on PostgreSQL, a reader
    of the working tables too (a DuckDB warehouse file is the run's alone; BI opens the published file)."""
    with contextlib.ExitStack() as stack:
        published = PublishedReader(target, folder)
        s.published[phase] = published.log
        stack.enter_context(published)
        if not target.is_duckdb:
            reader = RefreshReader(target)
            s.readers[phase] = reader.log
            stack.enter_context(reader)
        yield


def raw_checksums(wh: Warehouse) -> dict[str, str]:
    with wh.connect() as conn:
        return {t: frame_checksum(wh.query_df(f"select * from raw.{t}", conn)) for t in (*RAW_COLUMNS, "load_log")}


FULL_REFRESH, HOURLY = "full refresh after the crash", "hourly run picking up a late click"
# The intermediate models an hourly run updates in place rather than rebuilding (their days or their new clicks).
# The tables the hourly run updates in place rather than by partition, by schema.
INCREMENTAL_MODELS = {
    "rejected_values": "staging",
    "int_clicks": "intermediate",
    "int_event_identities": "intermediate",
    "int_report_entity_days": "intermediate",
    **{report: "marts" for report in ("rpt_link_daily", "rpt_creator_performance", "rpt_campaign_performance",
                                      "rpt_channel_attribution", "rpt_attribution_quality")},
}  # fmt: skip
# The popularity members the hourly run leaves: the daily table as it was, and the pairs its loads added beside it;
# together they must be what a build of the daily table over the same data selects.
POPULARITY_MEMBERS = "int_popularity_members"
POPULARITY_AS_LEFT = (
    f"select * from intermediate.{POPULARITY_MEMBERS} union all select * from intermediate.{POPULARITY_MEMBERS}_new"
)


def incremental_vs_full(target: Target, wh: Warehouse, work: Path) -> dict[str, tuple[str, str]]:
    """Per incremental model: the checksum of its table and of what a full build over the same data selects (its SQL
    compiled with --full-refresh, queried without writing anything); the same for the popularity members."""
    dbt_target = work / "dbt_full_build"
    models = {**INCREMENTAL_MODELS, POPULARITY_MEMBERS: "intermediate"}
    run_dbt(target, "compile", "--select", *models, "--full-refresh", target_path=dbt_target)
    out = {}
    for model, schema in models.items():
        sql = next((dbt_target / "compiled").rglob(f"{model}.sql")).read_text()
        left = POPULARITY_AS_LEFT if model == POPULARITY_MEMBERS else f"select * from {schema}.{model}"
        out[model] = (frame_checksum(wh.query_df(left)), frame_checksum(wh.query_df(sql)))
    return out


def run_scenario(name: str, work: Path) -> Iterator[Scenario]:
    world_dir, late_dir, late = write_worlds(work)
    with module_target(name, work / "main", prefix="attr_rel") as target:
        wh = Warehouse(target)
        # Persistent: the schedule reads the run history (which loads the previous runs covered).
        instance = project_instance(target, work / "dagster_instance")
        s = Scenario(target, late)

        load_folder(wh, world_dir)
        assert_run_ok(run_job(target, instance=instance, log_level="WARNING"))
        s.clean, s.python_before, s.conversions = mart_checksums(wh), python_checksums(wh), conversions_count(wh)
        s.golden = mart_row_checksums(wh)
        s.late_before = late_credits(wh, late)
        s.end_to_end = end_to_end_facts(wh, world_dir)
        s.money = check_report_money(wh)
        load_folder(wh, world_dir, force=True)  # at-least-once delivery: the same files again, before the backup
        s.raw_before = raw_checksums(wh)
        backup_raw(wh, work / "backup")

        with pytest.MonkeyPatch.context() as mp:
            crash_attribution_mid_write(mp)
            s.crash = run_from_attribution(target, instance)
        s.crashed_marts, s.crashed_python = mart_checksums(wh), python_checksums(wh)
        s.crashed_violations = {
            "marts": conservation_violations(wh, "marts.fct_conversion_attribution", "marts.fct_attribution_credits"),
            "intermediate": conservation_violations(
                wh, "intermediate.conversion_attribution", "intermediate.attribution_credits"
            ),
        }

        # Run again after the crash, as an operator would: a plain incremental run over the same (reloaded) raw.
        assert_run_ok(run_job(target, instance=instance, log_level="WARNING"))
        s.rerun = mart_checksums(wh)

        wh.execute("drop schema raw cascade")
        restore_raw(wh, work / "backup")
        s.raw_restored = raw_checksums(wh)
        with pytest.MonkeyPatch.context() as mp, watching(target, s, FULL_REFRESH, work / "reader_full"):
            mp.setenv("ATTRIBUTION_DBT_FULL_REFRESH", "1")
            rebuilt = run_job(target, instance=instance, log_level="WARNING")
            assert_run_ok(rebuilt)
            s.rebuilt_run_id = rebuilt.run_id
        s.rebuilt = mart_checksums(wh)

        load_folder(wh, late_dir)
        tick = dg.build_schedule_context(instance=instance, scheduled_execution_time=WORLD_NOW)
        request = hourly_refresh_schedule(tick)
        assert isinstance(request, dg.RunRequest)
        s.hourly_tags = dict(request.tags)
        with watching(target, s, HOURLY, work / "reader_hourly"):
            hourly = run_job(target, "hourly_refresh", tags=request.tags, instance=instance, log_level="WARNING")
        assert_run_ok(hourly)
        s.hourly_run_tags = dict(instance.get_run_by_id(hourly.run_id).tags)
        s.metadata_labels = {
            "full": materialized_labels(instance, s.rebuilt_run_id),
            "hourly": materialized_labels(instance, hourly.run_id),
        }
        s.published_copied = {
            FULL_REFRESH: published_copied(instance, s.rebuilt_run_id),
            HOURLY: published_copied(instance, hourly.run_id),
        }
        s.late_after = late_credits(wh, late)
        s.late_violations = conservation_violations(
            wh, "marts.fct_conversion_attribution", "marts.fct_attribution_credits"
        )
        s.incremental_vs_full = incremental_vs_full(target, wh, work)
        yield s


def materialized_labels(instance: dg.DagsterInstance, run_id: str) -> dict[str, set[str]]:
    """Each asset a run materialized, as "schema/name", with the labels of its metadata."""
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return {
        event.asset_materialization.asset_key.to_user_string(): set(event.asset_materialization.metadata)
        for event in events
        if event.asset_materialization is not None
    }


def published_copied(instance: dg.DagsterInstance, run_id: str) -> str:
    """The `copied` metadata of the run's publish: every mart, or the changes since the previous snapshot."""
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    (copied,) = [
        event.asset_materialization.metadata["copied"].value
        for event in events
        if event.asset_materialization is not None and event.asset_materialization.asset_key == PUBLISHED_MARTS
    ]
    return str(copied)


@pytest.fixture(scope="module")
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    yield from run_scenario(request.param, tmp_path_factory.mktemp(f"reliability_{request.param}"))


BOTH_TARGETS = pytest.mark.parametrize("scenario", ["duckdb", "postgres"], indirect=True)


@pytest.mark.e2e
@BOTH_TARGETS
def test_pipeline_end_to_end(scenario: Scenario) -> None:
    """generate → load → every asset through Dagster → marts → evaluation against the world's truth."""
    e2e = scenario.end_to_end
    assert e2e is not None
    assert e2e.facts == e2e.conversions == scenario.conversions > 0
    assert e2e.models == set(MODELS)
    assert 0 < e2e.attributed < e2e.conversions
    assert "precision" in e2e.evaluation_text
    assert e2e.evaluation["project"]["last_touch"]["precision"] is not None
    assert e2e.evaluation["baseline"]["last_touch"]["precision"] is not None


@pytest.mark.e2e
@BOTH_TARGETS
def test_reports_revenue_is_converted_conversion_revenue_to_the_cent(scenario: Scenario) -> None:
    """Three currencies and add_to_cart events: per day and model, every report's revenue equals the converted
    revenue of the configured conversion types (recomputed from staging); conversions without a usable rate are
    counted in rpt_attribution_quality, not summed."""
    money = scenario.money
    assert money is not None
    assert money.currencies == {"USD", "EUR", "GBP"}
    assert money.event_types.get("add_to_cart", 0) > 0 and money.credited_non_conversions == 0
    assert money.converted > 0 and money.missing_rate > 0
    assert not money.mismatches, money.mismatches[:20]


@pytest.mark.e2e
@BOTH_TARGETS
def test_reports_spend_is_converted_staged_spend_and_return_is_revenue_over_spend(scenario: Scenario) -> None:
    """Creator fees and link costs in three currencies (GBP rates stop early, so some spend has no usable rate): per
    creator and day, the report's spend equals the staged spend converted to the reporting currency (a link's spend
    rolled up to its creator), and per model return_on_spend equals the credited revenue over that spend."""
    money = scenario.money
    assert money is not None
    assert money.spend_rows > 0 and money.spend_currencies == {"USD", "EUR", "GBP"}
    assert money.spend_missing_rate > 0 and money.spend_days_checked > 0
    assert not money.spend_mismatches, money.spend_mismatches[:20]


# Row checksums of every mart after the clean run of WORLD, per target. A change that is meant to leave every
# report as it was (a refactoring, a speed-up) must reproduce them; a change that alters marts on purpose
# re-records them with UPDATE_MART_CHECKSUMS=1 and says why in its commit.
MART_CHECKSUMS = Path(__file__).parent / "fixtures" / "mart_checksums.json"


@pytest.mark.e2e
@BOTH_TARGETS
def test_clean_run_reproduces_the_recorded_marts(scenario: Scenario) -> None:
    name = scenario.target.name
    recorded = json.loads(MART_CHECKSUMS.read_text()) if MART_CHECKSUMS.exists() else {}
    if os.environ.get("UPDATE_MART_CHECKSUMS") == "1":
        recorded[name] = scenario.golden
        MART_CHECKSUMS.parent.mkdir(exist_ok=True)
        MART_CHECKSUMS.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    assert name in recorded, f"no recorded checksums for {name}: run with UPDATE_MART_CHECKSUMS=1"
    changed = {m: (recorded[name].get(m), c) for m, c in scenario.golden.items() if recorded[name].get(m) != c}
    assert not changed, f"marts differ from the recorded run (recorded, now): {changed}"


@pytest.mark.e2e
@BOTH_TARGETS
def test_no_raw_email_or_ip_downstream_of_staging(scenario: Scenario) -> None:
    e2e = scenario.end_to_end
    assert e2e is not None
    assert e2e.text_columns > 20, "expected the downstream tables' text columns"
    assert not e2e.pii_leaks, f"raw emails/IPs found after staging: {e2e.pii_leaks}"


@pytest.mark.e2e
@BOTH_TARGETS
def test_crash_fails_the_run_in_attribution(scenario: Scenario) -> None:
    result = scenario.crash
    assert result is not None and not result.success
    failed = {e.step_key: e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure}
    assert list(failed) == ["attribution"], failed
    assert "SimulatedCrash" in failed["attribution"]


@pytest.mark.e2e
@BOTH_TARGETS
def test_crash_leaves_no_partial_rows_visible(scenario: Scenario) -> None:
    """While crashed, marts keep the previous complete state and the attribution tables roll back as a unit:
    conservation holds in both layers, nothing is half-written."""
    assert scenario.crashed_marts == scenario.clean
    assert scenario.crashed_python == scenario.python_before
    assert scenario.crashed_violations == {"marts": [], "intermediate": []}


@pytest.mark.e2e
@BOTH_TARGETS
def test_rerun_after_the_crash_over_reloaded_files_equals_the_clean_run(scenario: Scenario) -> None:
    """Idempotency and crash recovery in one: the same files loaded twice, a run killed mid-attribution, then a
    plain rerun give every mart of the clean run."""
    assert set(scenario.rerun) == set(MARTS)
    assert scenario.rerun == scenario.clean


@pytest.mark.e2e
@BOTH_TARGETS
def test_restore_and_full_rebuild_after_the_crash_reproduce_every_mart(scenario: Scenario) -> None:
    """Raw restored from its backup is raw as it was; the full rebuild after the crash gives every mart of the
    clean run, byte for byte (order-independent checksums of every row)."""
    assert scenario.raw_restored == scenario.raw_before
    assert set(scenario.rebuilt) == set(MARTS)
    assert scenario.rebuilt == scenario.clean


@pytest.mark.e2e
@pytest.mark.parametrize("scenario", ["postgres"], indirect=True)
def test_readers_never_see_an_empty_missing_or_half_built_table(scenario: Scenario) -> None:
    assert set(scenario.readers) == {FULL_REFRESH, HOURLY}
    for phase, log in scenario.readers.items():
        assert not log.problems, f"{phase}: {log.problems[:10]}"
        assert log.loops >= 5, f"{phase}: the reader barely ran ({log.loops} loops)"
        assert set(log.relations) == {f"marts.{m}" for m in MARTS} | {f"intermediate.{t}" for t in PYTHON_TABLES}
    # The reader really overlapped the rebuilds: it read old and new relations of the swapped tables.
    swapped = {name for name, oids in scenario.readers[FULL_REFRESH].relations.items() if len(oids) > 1}
    assert {"marts.fct_conversion_attribution", "marts.rpt_channel_attribution", "intermediate.match_model"} <= swapped


@pytest.mark.e2e
@BOTH_TARGETS
def test_bi_readers_never_block_a_run_nor_see_half_a_refresh(scenario: Scenario) -> None:
    """A BI process reads the published marts throughout two runs (each succeeded: run_scenario asserts it). Every
    statement sees every mart of the previous snapshot or every mart of the new one, never a mix; on DuckDB a
    connection held open on the old file keeps reading the old snapshot while the run replaces it."""
    assert set(scenario.published) == {FULL_REFRESH, HOURLY}
    for phase, log in scenario.published.items():
        assert log.before is not None and log.after is not None, phase
        assert log.equals_marts, f"{phase}: the published snapshot differs from the marts the run built"
        # The full refresh copies every mart; the hourly run only the days its marts rewrote, into the old snapshot.
        expected = "changes since the previous snapshot" if phase == HOURLY else f"{len(MARTS)} marts copied whole"
        assert scenario.published_copied[phase].startswith(expected), (phase, scenario.published_copied[phase])
        errors = [e["error"] for e in log.seen if e["kind"] == "error"]
        assert not errors, f"{phase}: {errors[:5]}"
        fresh = [e["signature"] for e in log.seen if e["kind"] == "fresh"]
        assert len(fresh) >= 5, f"{phase}: the reader barely ran ({len(fresh)} reads)"
        mixed = [signature for signature in fresh if signature not in (log.before, log.after)]
        assert not mixed, f"{phase}: {len(mixed)} reads saw neither the old nor the new snapshot, e.g. {mixed[0]}"
        assert fresh[0] == log.before and fresh[-1] == log.after, phase
        held = [e["signature"] for e in log.seen if e["kind"] == "held"]
        if scenario.target.is_duckdb:
            assert held and all(signature == log.before for signature in held), phase
    # The late click changes the marts: the reader saw the snapshot change under it.
    hourly = scenario.published[HOURLY]
    assert hourly.before != hourly.after


def mf(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    """MetricFlow's CLI at the repository root on ``target`` (it reads target/semantic_manifest.json)."""
    env = {**os.environ, **target_env(target), "DBT_PROFILES_DIR": str(PROJECT_ROOT / "dbt_project")}
    command = [str(Path(sys.executable).with_name("mf")), *args]
    proc = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mf {' '.join(args)}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@contextlib.contextmanager
def semantic_manifest_lock() -> Iterator[None]:
    """Held by one process at a time (an advisory lock on a file beside the manifest)."""
    lock = PROJECT_ROOT / "target" / ".semantic_manifest.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cents(value: Any) -> Decimal:
    return Decimal(0) if pd.isna(value) else Decimal(str(value)).quantize(Decimal("0.01"))


@pytest.mark.e2e
@BOTH_TARGETS
def test_metricflow_answers_equal_the_channel_report_to_the_cent(scenario: Scenario, tmp_path: Path) -> None:
    """The semantic layer validates against the warehouse, and `mf query` gives the reports' numbers: revenue per
    day equals one model's channel rows summed; credited revenue, spend and return on spend per day, channel and
    model equal rpt_channel_attribution's row (money to the cent, the ratio to its 6 decimals)."""
    target = scenario.target
    by_channel, by_day = tmp_path / "by_channel.csv", tmp_path / "by_day.csv"
    # mf reads <project>/target/semantic_manifest.json, one file for every target: the other target's worker must
    # not parse over it between this parse and these queries.
    with semantic_manifest_lock():
        run_dbt(target, "parse", target_path=PROJECT_ROOT / "target")
        assert "ERRORS: 0" in mf(target, "validate-configs").stdout
        mf(target, "query", "--metrics", "credited_revenue,spend,return_on_spend",
           "--group-by", "metric_time__day,channel,channel_day__model", "--csv", str(by_channel))  # fmt: skip
        mf(target, "query", "--metrics", "revenue", "--group-by", "metric_time__day", "--csv", str(by_day))
    answer = pd.read_csv(by_channel, dtype={"channel": str})
    daily = pd.read_csv(by_day)
    wh = Warehouse(target)
    report = wh.query_df("select * from marts.rpt_channel_attribution")

    def day(value: Any) -> str:
        return str(pd.Timestamp(value).date())

    got = {
        (day(r.metric_time__day), r.channel, r.channel_day__model):
            (cents(r.credited_revenue), r.spend, r.return_on_spend)
        for r in answer.itertuples()
    }  # fmt: skip
    mismatches, with_spend = [], 0
    for r in report.itertuples():
        key = (day(r.report_date), r.channel, r.model)
        credited = Decimal(0) if r.is_unattributed else cents(r.revenue)
        revenue, spend, ratio = got.get(key, (None, None, None))
        if revenue != credited or cents(spend) != cents(r.spend) or pd.isna(spend) != pd.isna(r.spend):
            mismatches.append(f"{key}: mf {(revenue, spend)} != report {(credited, r.spend)}")
        if pd.notna(r.return_on_spend):
            with_spend += 1
            if pd.isna(ratio) or abs(float(ratio) - float(r.return_on_spend)) > 1e-6:
                mismatches.append(f"{key}: return_on_spend mf {ratio} != report {r.return_on_spend}")
        elif pd.notna(ratio):
            mismatches.append(f"{key}: return_on_spend mf {ratio} without spend in the report")
    assert len(got) == len(report) and with_spend > 0
    assert not mismatches, mismatches[:20]
    # Days of clicks only have report rows without revenue and no conversion for mf to count.
    linear = report.loc[report["model"] == "linear"].groupby(report["report_date"].map(day))["revenue"].sum()
    want = {d: cents(v) for d, v in linear.items() if cents(v) != 0}
    answered = zip(daily["metric_time__day"], daily["revenue"], strict=True)
    assert {day(d): cents(v) for d, v in answered if cents(v) != 0} == want
    assert len(want) > 0


@pytest.mark.e2e
@BOTH_TARGETS
def test_data_driven_credits_add_up_to_their_fit(scenario: Scenario) -> None:
    """Markov and Shapley credits per channel in fct_attribution_credits equal the fit's totals (to 1e-6), as
    far as a split of the conversions reaches them (reconciliation_gaps)."""
    e2e = scenario.end_to_end
    assert e2e is not None
    assert set(e2e.reconciliation) == {"markov", "shapley"}
    assert max(e2e.reconciliation.values()) < 1e-6, e2e.reconciliation


@pytest.mark.e2e
@BOTH_TARGETS
def test_late_click_moves_the_credit_at_the_next_hourly_run(scenario: Scenario) -> None:
    late = scenario.late
    start = scenario.hourly_tags["dagster/asset_partition_range_start"]
    yesterday = (WORLD_NOW.date() - timedelta(days=1)).isoformat()
    assert start <= late.conversion_day < yesterday, scenario.hourly_tags  # the late data widened the window
    assert scenario.hourly_tags[COVERS_TAG] == "true"

    before, after = scenario.late_before, scenario.late_after
    assert before is not None and after is not None
    assert late.click_id not in set(before["click_id"]) and set(before["candidate_click_id"]) != {late.click_id}
    assert set(after["candidate_click_id"]) == {late.click_id}
    last_touch = after[after["model"] == "last_touch"].set_index("click_id")["credit_share"]
    assert last_touch.get(late.click_id, 0) > 0.5, last_touch
    assert not scenario.late_violations


# ------------------------------------------------------------------------------- partition selection rules ---
JAN_1 = date(2026, 1, 1)
TICK = datetime(2026, 6, 15, 3, 15, tzinfo=UTC)


@BOTH_TARGETS
def test_hourly_run_names_on_every_materialization_what_waits_for_the_daily_job(scenario: Scenario) -> None:
    hourly, full = scenario.metadata_labels["hourly"], scenario.metadata_labels["full"]
    assert {"intermediate/match_scores", "intermediate/attribution_credits", "marts/rpt_link_daily"} <= set(hourly)
    scope = {"attribution/left_until_daily_job", "attribution/identities_as_of", "attribution/match_model_as_of"}
    assert {asset for asset, labels in hourly.items() if not scope <= labels} == set()
    assert {asset for asset, labels in full.items() if scope & labels} == set()
    assert "marts/rpt_link_daily" in full


@BOTH_TARGETS
def test_hourly_run_leaves_its_incremental_models_as_a_full_build_would(scenario: Scenario) -> None:
    """The hourly run rebuilt the late click (and its IP's neighbours) in int_clicks, its identity (merged into the
    stored identities) in int_event_identities, its window's days in int_report_entity_days and the reports, and the
    new loads' unusable values, and added the late click's popularity members beside the daily table's; every row
    equals a full build's over the same data and the same identities."""
    assert scenario.hourly_run_tags[REPORTS_TAG] == REPORTS_BY_WINDOW
    assert set(scenario.incremental_vs_full) == {*INCREMENTAL_MODELS, POPULARITY_MEMBERS}
    for model, (incremental, full) in scenario.incremental_vs_full.items():
        assert incremental == full, model


def test_late_clicks_and_conversions_widen_the_refresh_window() -> None:
    # Nothing new: the recent days only.
    assert refresh_range(TICK, 1, first_affected_day(LoadedEventDays(), 30, JAN_1)) == (date(2026, 6, 14), TICK.date())
    # A click from 40 days ago is a candidate for conversions up to 30 days later: from its day (minus the UTC
    # margin) through today, beyond the daily re-fit's lookback window too.
    clicks = LoadedEventDays(clicks=frozenset({date(2026, 5, 6), date(2026, 6, 15)}))
    first = first_affected_day(clicks, 30, JAN_1)
    assert first == date(2026, 5, 5)
    assert refresh_range(TICK, 1, first) == refresh_range(TICK, 30, first) == (date(2026, 5, 5), TICK.date())
    # A late conversion is its own day.
    assert first_affected_day(LoadedEventDays(conversions=frozenset({date(2026, 6, 1)})), 30, JAN_1) == date(
        2026, 5, 31
    )


def test_events_outside_every_partition_change_nothing() -> None:
    ancient = LoadedEventDays(
        clicks=frozenset({date(1, 1, 1), date(2025, 11, 1)}), conversions=frozenset({date(2025, 12, 1)})
    )
    assert first_affected_day(ancient, 30, JAN_1) is None
    # A click 20 days before the first partition still reaches its first days; the window starts there.
    assert first_affected_day(LoadedEventDays(clicks=frozenset({date(2025, 12, 12)})), 30, JAN_1) == JAN_1


def test_a_full_refresh_of_a_partition_range_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full refresh rebuilds partitioned models from the selected window only: the other days would vanish."""
    from tests.conftest import make_target

    monkeypatch.setenv("ATTRIBUTION_DBT_FULL_REFRESH", "1")
    with pytest.raises(ValueError, match="full refresh rebuilds every partition"):
        run_job(make_target("duckdb", tmp_path), partition_range=("2026-06-01", "2026-06-02"))


def test_event_days_of_new_loads_are_read_from_raw_text(target: Target, tmp_path: Path) -> None:
    """The days late data can change, per engine: only loads after the stamp count, offsets and junk included,
    a new version of a link brings back the days of every click on it, and spend its own day."""
    wh = Warehouse(target)

    def load(name: str, **tables: list[dict[str, str]]) -> datetime:
        folder = tmp_path / name
        folder.mkdir()
        for table, rows in tables.items():
            with open(folder / f"{table}.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(RAW_COLUMNS[table]))
                writer.writeheader()
                writer.writerows({**dict.fromkeys(RAW_COLUMNS[table], ""), **row} for row in rows)
        return load_folder(wh, folder).loaded_at

    first = load(
        "first",
        links=[{"link_id": "L1"}, {"link_id": "L2"}],
        clicks=[{"click_id": "c1", "link_id": "L1", "clicked_at": "2026-03-01T23:00:00-05:00"},
                {"click_id": "c2", "link_id": "L2", "clicked_at": "2026-03-02T10:00:00Z"}],
        conversions=[{"conversion_id": "v1", "converted_at": "2026-03-03T10:00:00Z"}],
    )  # fmt: skip
    load(
        "second",
        links=[{"link_id": " L1 "}],  # a corrected version of L1
        clicks=[{"click_id": "c3", "link_id": "L9", "clicked_at": " 2026-02-20T10:00:00+01:00"},
                {"click_id": "c4", "link_id": "L9", "clicked_at": "garbage"}],
        conversions=[{"conversion_id": "v2", "converted_at": "2026-02-25 08:00:00"}],
        spend=[{"spend_date": "2026-01-15", "link_id": "L1", "amount": "10", "currency": "USD"}],  # that day's reports
    )  # fmt: skip
    everything = event_days_loaded_after(wh, None)
    assert everything.conversions == {date(2026, 3, 3), date(2026, 2, 25), date(2026, 1, 15)}
    assert everything.clicks == {date(2026, 3, 1), date(2026, 3, 2), date(2026, 2, 20)}
    since_first = event_days_loaded_after(wh, first)
    assert since_first.conversions == {date(2026, 2, 25), date(2026, 1, 15)}
    assert since_first.clicks == {date(2026, 2, 20), date(2026, 3, 1)}  # c3, and c1 through its relinked L1
    assert newest_load(wh) > first
    assert event_days_loaded_after(wh, newest_load(wh)) == LoadedEventDays()
