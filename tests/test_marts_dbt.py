"""dbt marts on both targets, built from hand-made upstream tables.

The upstream tables (``staging.stg_raw__links``, ``intermediate.int_clicks`` and the Python assets' outputs) are
written directly with ``Warehouse.replace_table`` and only the marts are built, so these tests exercise the marts
alone: contracts, generic and singular tests (credit conservation), the partitioned rerun of the facts, docs and,
on PostgreSQL, the read-only BI role. Credits and conversion facts come from the real ``python_models`` functions,
so they have the shapes and dtypes the Python assets write.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from orchestration.publish import publish_marts_args
from python_models.attribution import AttributionConfig, attribute, select_touches
from python_models.baseline import SIGNAL_COLUMNS
from python_models.facts import conversion_facts
from tests.conftest import MARTS, published_checksums, run_dbt
from warehouse.client import Warehouse, frame_checksum
from warehouse.target import PUBLISHED_SCHEMA, Target

MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based", "markov", "shapley", "rule_based")
FACTS = ("fct_attribution_credits", "fct_conversion_attribution")
REPORTS_BY_DAY = (
    "rpt_attribution_quality",
    "rpt_campaign_performance",
    "rpt_channel_attribution",
    "rpt_creator_performance",
    "rpt_link_daily",
)
DAY_5, DAY_6 = "2026-01-05", "2026-01-06"
BI_ROLE = "bi_reader"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# -- hand-made upstream world -----------------------------------------------------------------------------------
LINKS = pd.DataFrame(
    {
        "link_id": ["L1", "L2", "L3"],
        "short_code": ["a1", "b2", "c3"],
        "campaign_id": ["K1", "K2", "K2"],
        "creator_id": ["C1", "C1", "C2"],
        "channel": ["instagram", "tiktok", "email"],
        "destination_url": ["https://shop.example/1", "https://shop.example/2", "https://shop.example/3"],
        "created_at": [ts("2026-01-01 00:00")] * 3,
    }
)
# click_id, link_id, clicked_at, is_bot, identity
CLICKS = [
    ("K01", "L1", "2026-01-04 10:00", False, "P1"),
    ("K02", "L2", "2026-01-05 09:00", False, "P1"),
    ("K03", "L1", "2026-01-05 09:30", True, "P9"),
    ("K04", "L3", "2026-01-05 12:00", False, "P2"),
    ("K05", "L3", "2026-01-06 08:00", False, "P3"),
    ("K06", "L9", "2026-01-06 08:30", False, "P3"),
    ("K07", "L2", "2026-01-06 09:00", False, "P4"),
]
# conversion_id, converted_at, revenue, identity
CONVERSIONS = [
    ("V1", "2026-01-05 10:00", 100.00, "P1"),
    ("V2", "2026-01-05 13:00", 33.33, "P2"),
    ("V3", "2026-01-06 10:00", 50.00, "P3"),
    ("V4", "2026-01-06 11:00", 20.00, "P5"),
]
# conversion_id, click_id, match_probability, strongest shared signal
CANDIDATES = [
    ("V1", "K01", 0.70, "cookie"),
    ("V1", "K02", 0.90, "user_id"),
    ("V2", "K04", 0.999, "direct_click"),
    ("V2", "K01", 0.10, "ip"),
    ("V3", "K05", 0.60, "fingerprint"),
    ("V3", "K06", 0.40, "ip_ua"),
    ("V3", "K07", 0.20, "ip"),
]


def clicks_frame() -> pd.DataFrame:
    frame = pd.DataFrame(CLICKS, columns=["click_id", "link_id", "clicked_at", "is_bot", "identity_id"])
    frame["clicked_at"] = frame["clicked_at"].map(ts)
    frame["clicked_date"] = frame["clicked_at"].dt.date
    links = LINKS.set_index("link_id")
    frame["is_known_link"] = frame["link_id"].isin(links.index)
    for column in ("campaign_id", "creator_id", "channel"):
        frame[column] = frame["link_id"].map(links[column])
    frame["bot_reason"] = frame["is_bot"].map({True: "user_agent", False: None})
    frame["device_fingerprint"] = "fp_" + frame["identity_id"]
    frame["device_family"] = "iphone"
    frame["user_agent"] = "Mozilla/5.0 (" + frame["click_id"] + ")"
    return frame


def python_tables(revenue: dict[str, float] | None = None, drop: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """The Python assets' outputs for the hand-made world (``revenue`` overrides, ``drop`` removes conversions)."""
    clicks = clicks_frame()
    conversions = pd.DataFrame(CONVERSIONS, columns=["conversion_id", "converted_at", "revenue", "identity_id"])
    conversions = conversions.loc[~conversions["conversion_id"].isin(drop)].reset_index(drop=True)
    conversions["revenue"] = conversions["conversion_id"].map(revenue or {}).fillna(conversions["revenue"])
    conversions["converted_at"] = conversions["converted_at"].map(ts)
    conversions["conversion_date"] = conversions["converted_at"].dt.date
    conversions["event_type"] = "purchase"

    candidates = pd.DataFrame(CANDIDATES, columns=["conversion_id", "click_id", "match_probability", "signal"])
    candidates = candidates.loc[candidates["conversion_id"].isin(conversions["conversion_id"])]
    candidates = candidates.merge(conversions[["conversion_id", "converted_at"]], on="conversion_id").merge(
        clicks[["click_id", "link_id", "clicked_at", "channel", "identity_id"]].rename(
            columns={"identity_id": "click_identity_id"}
        ),
        on="click_id",
    )
    for column in SIGNAL_COLUMNS:
        candidates[column] = candidates["signal"] == column.removeprefix("sig_")
    candidates = candidates.sort_values(["conversion_id", "click_id"]).reset_index(drop=True)

    config = AttributionConfig()
    credits = attribute(candidates, conversions, config)
    credits = credits.merge(conversions[["conversion_id", "conversion_date"]], on="conversion_id", how="left")
    facts = conversion_facts(select_touches(candidates, config), candidates, conversions["conversion_id"], 0.5)
    facts = conversions[
        ["conversion_id", "conversion_date", "converted_at", "event_type", "revenue", "identity_id"]
    ].merge(facts, on="conversion_id", how="left")

    events = pd.concat(
        [
            pd.DataFrame({"event_kind": "click", "event_id": clicks["click_id"], "identity_id": clicks["identity_id"]}),
            pd.DataFrame(
                {
                    "event_kind": "conversion",
                    "event_id": conversions["conversion_id"],
                    "identity_id": conversions["identity_id"],
                }
            ),
        ],
        ignore_index=True,
    )
    # One cookie per person; P9 (only a bot click) is resolved but has no human activity.
    people = sorted({*clicks["identity_id"], *conversions["identity_id"]})
    identity_map = pd.DataFrame(
        {"identifier_type": "cookie", "identifier_value": [f"c_{p}" for p in people], "identity_id": people}
    )

    signal_weights = pd.DataFrame(
        {
            "signal": ["direct_click", "user_id", "cookie", "ip"],
            "prior_confidence": [0.95, 0.90, 0.80, 0.50],
            "learned_weight": [6.2, 4.1, 2.0, 0.3],
            "match_weight_log2": [8.9, 5.9, 2.9, 0.4],
            "n_labelled_pairs": [40, 31, 25, 60],
            "n_positive": [40, 29, 18, 6],
            "n_negative": [0, 2, 7, 54],
            "source": ["learned", "learned", "learned", "prior"],
        }
    )
    scores = candidates[["conversion_id", "click_id", "match_probability"]].merge(
        conversions[["conversion_id", "conversion_date"]], on="conversion_id"
    )
    # V2 was paid in euros: the facts keep 30.00 EUR beside the 33.33 USD the credits split.
    in_euros = conversions["conversion_id"] == "V2"
    money = pd.DataFrame(
        {
            "conversion_id": conversions["conversion_id"],
            "converted_at": conversions["converted_at"],
            "converted_date": conversions["conversion_date"],
            "event_type": conversions["event_type"],
            "is_conversion": True,
            "revenue": conversions["revenue"].where(~in_euros, 30.0),
            "currency": np.where(in_euros, "EUR", "USD"),
            "fx_rate": np.where(in_euros, 1.111, 1.0),
            "fx_rate_date": conversions["conversion_date"].where(in_euros),
            "reporting_revenue": conversions["revenue"],
            "reporting_currency": "USD",
            "fx_status": np.where(in_euros, "converted", "same_currency"),
        }
    )
    return {
        "int_conversions": money,
        "int_identity_map": identity_map,
        "int_event_identities": events,
        "signal_weights": signal_weights,
        "match_scores": scores[["conversion_id", "click_id", "conversion_date", "match_probability"]],
        "attribution_credits": credits,
        "conversion_attribution": facts,
    }


def write_upstream(wh: Warehouse, tables: dict[str, pd.DataFrame]) -> None:
    with wh.connect() as conn:
        wh.ensure_schemas(conn)
        for name, frame in tables.items():
            wh.replace_table(frame, "intermediate", name, conn)


def conversions_frame() -> pd.DataFrame:
    """The staged conversions as far as the marts read them."""
    frame = pd.DataFrame(CONVERSIONS, columns=["conversion_id", "converted_at", "revenue", "identity_id"])
    frame["converted_at"] = frame["converted_at"].map(ts)
    frame["device_fingerprint"] = "fp_" + frame["identity_id"]
    return frame.drop(columns=["identity_id"])


# Spend as int_spend gives it: (spend_id, day, entity_type, entity, reporting amount or None without a usable rate).
SPEND = [
    ("S1", DAY_5, "link_id", "L1", 10.00),  # C1's link: counts for L1, C1, K1 and instagram
    ("S2", DAY_5, "creator_id", "C1", 5.50),  # C1's fee: counts for C1 only
    ("S3", DAY_6, "channel", "tiktok", 3.00),
    ("S4", DAY_6, "link_id", "L2", None),  # no usable rate: left out
    ("S5", "2026-01-03", "creator_id", "C2", 7.00),  # a day without clicks or credits still gets its row
]


def spend_frame() -> pd.DataFrame:
    rows = []
    for spend_id, day, entity_type, entity, amount in SPEND:
        row = dict.fromkeys(("link_id", "campaign_id", "creator_id", "channel"))
        row[entity_type] = entity
        rows.append({"spend_id": spend_id, "spend_date": pd.Timestamp(day), "entity_type": entity_type, **row,
                     "amount": amount, "currency": "USD", "fx_status": "missing_fx_rate" if amount is None else
                     "same_currency", "reporting_amount": amount})  # fmt: skip
    return pd.DataFrame(rows)


def write_world(wh: Warehouse) -> None:
    clicks = clicks_frame().drop(columns=["identity_id"])
    with wh.connect() as conn:
        wh.ensure_schemas(conn)
        wh.replace_table(LINKS, "staging", "stg_raw__links", conn)
        wh.replace_table(clicks, "intermediate", "int_clicks", conn)
        wh.replace_table(conversions_frame(), "staging", "stg_raw__conversions", conn)
        wh.replace_table(spend_frame(), "intermediate", "int_spend", conn)
        # A raw table the BI role must not be able to read.
        wh.replace_table(LINKS.astype(str), "raw", "links", conn)
    write_upstream(wh, python_tables())


# -- helpers ------------------------------------------------------------------------------------------------------
def marts_df(wh: Warehouse, table: str, order: str) -> pd.DataFrame:
    return wh.query_df(f"select * from marts.{table} order by {order}")


def checksums(wh: Warehouse) -> dict[str, str]:
    return {table: frame_checksum(wh.query_df(f"select * from marts.{table}")) for table in MARTS}


def declared_types(manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    out = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["name"] in MARTS:
            assert node["config"]["contract"]["enforced"], f"{node['name']}: contract not enforced"
            out[node["name"]] = {name: col["data_type"] for name, col in node["columns"].items()}
    return out


def normalise_type(data_type: str) -> str:
    """Declared and information_schema type names in one vocabulary (DuckDB and PostgreSQL spell them apart)."""
    t = data_type.lower().replace(" ", "")
    aliases = {
        "varchar": "text",
        "character varying": "text",
        "double": "doubleprecision",
        "timestampwithtimezone": "timestamptz",
        "int": "integer",
        "int4": "integer",
        "int8": "bigint",
        "bool": "boolean",
    }
    t = aliases.get(t, t)
    return t.replace("decimal", "numeric")


def information_schema_types(wh: Warehouse) -> dict[str, dict[str, str]]:
    frame = wh.query_df(
        "select table_name, column_name, data_type, numeric_precision, numeric_scale "
        "from information_schema.columns where table_schema = 'marts' order by table_name, ordinal_position"
    )
    out: dict[str, dict[str, str]] = {}
    for row in frame.itertuples():
        data_type = str(row.data_type).lower()
        if data_type.startswith(("numeric", "decimal")):
            data_type = f"numeric({int(row.numeric_precision)},{int(row.numeric_scale)})"
        out.setdefault(row.table_name, {})[row.column_name] = normalise_type(data_type)
    return out


# -- the test -----------------------------------------------------------------------------------------------------
def test_marts_build_partitions_conservation_and_docs(target: Target, tmp_path: Path) -> None:
    """One warehouse per target: build, rebuild, a report test in and out of a window, partitioned rerun, broken
    test, docs."""
    wh = Warehouse(target)
    write_world(wh)
    dbt_target = tmp_path / "dbt_target"

    # 1. Build every mart with its tests (credit conservation included).
    run_dbt(target, "build", "--select", "marts", "tag:after_attribution", target_path=dbt_target)
    manifest = json.loads((dbt_target / "manifest.json").read_text())
    declared = assert_contracts(wh, manifest)
    assert_contents(wh)

    # 2. Rebuilding from the same data gives identical marts (no load or run timestamps).
    before = checksums(wh)
    run_dbt(target, "run", "--select", "marts", "tag:after_attribution", target_path=dbt_target)
    assert checksums(wh) == before

    # 3. A report's uniqueness test guards the run's window when dbt gets one (the hourly job: the days it rewrote),
    #    and every day without one (the daily job and full runs: history).
    wh.execute(f"insert into marts.rpt_link_daily select * from marts.rpt_link_daily where report_date = '{DAY_5}'")
    day_6 = json.dumps({"partition_start": f"{DAY_6}T00:00:00+00:00", "partition_end": "2026-01-07T00:00:00+00:00"})
    run_dbt(target, "test", "--select", "rpt_link_daily", "--vars", day_6, target_path=dbt_target)
    with pytest.raises(pytest.fail.Exception, match="unique_rpt_link_daily"):
        run_dbt(target, "test", "--select", "rpt_link_daily", target_path=dbt_target)
    run_dbt(target, "run", "--select", "rpt_link_daily", target_path=dbt_target)
    assert checksums(wh) == before

    # Publishing for BI: the first publish, and one after marts by day were rebuilt whole, copy every mart; with
    # nothing rebuilt since, the snapshot is kept as it is.
    assert publish(target, dbt_target).startswith("publish_marts: 11 marts copied whole")
    assert publish(target, dbt_target).endswith(": none")
    if not target.is_duckdb:
        assert_by_day_indexes(wh)

    # 4. Upstream changes on both days (V1 on day 5; V3 on day 6, V4 of day 6 disappears); a partitioned
    #    run for day 6 rewrites day 6 and leaves day 5 alone.
    write_upstream(wh, python_tables(revenue={"V1": 10.0, "V3": 70.0}, drop=("V4",)))
    old = {table: marts_df(wh, table, "conversion_id") for table in FACTS}
    run_dbt(target, "build", "--select", "marts,tag:partitioned", "--vars", day_6, target_path=dbt_target)
    for table in FACTS:
        new = marts_df(wh, table, "conversion_id")
        assert frame_checksum(on_day(new, DAY_5)) == frame_checksum(on_day(old[table], DAY_5)), table
        assert set(on_day(new, DAY_6)["conversion_id"]) == {"V3"}, table
    facts = marts_df(wh, "fct_conversion_attribution", "conversion_id").set_index("conversion_id")
    assert float(facts.loc["V3", "revenue"]) == 70.0 and float(facts.loc["V1", "revenue"]) == 100.0
    # The publish copies day 6 of the two facts into the previous snapshot (V4 leaves it) and nothing else.
    assert publish(target, dbt_target).endswith(
        ": fct_attribution_credits (1 windows), fct_conversion_attribution (1 windows)"
    )
    # A report rebuilt for every day (the daily job) is published with every other mart.
    run_dbt(target, "run", "--select", "rpt_link_daily", target_path=dbt_target)
    assert publish(target, dbt_target).startswith("publish_marts: 11 marts copied whole")

    # 5. The conservation test (it passed in the builds above) catches a broken credit row.
    wh.execute(
        "update marts.fct_attribution_credits set credit_share = credit_share + 0.25, "
        "credit_revenue = credit_revenue + 0.01 where conversion_id = 'V3' and model = 'linear' and is_unattributed"
    )
    compiled = next((dbt_target / "compiled").rglob("assert_marts_credit_conservation.sql")).read_text()
    violations = wh.query_df(compiled)
    assert sorted(zip(violations["violation"], violations["model"], strict=True)) == [
        ("revenue", "linear"),
        ("share", "linear"),
    ]
    assert violations.loc[violations["violation"] == "share", "conversion_id"].tolist() == ["V3"]
    with pytest.raises(pytest.fail.Exception, match="assert_marts_credit_conservation"):
        run_dbt(target, "test", "--select", "assert_marts_credit_conservation", target_path=dbt_target)

    # 6. Docs: the catalog has every mart with its columns.
    run_dbt(target, "docs", "generate", target_path=dbt_target)
    catalog = json.loads((dbt_target / "catalog.json").read_text())
    for table in MARTS:
        columns = catalog["nodes"][f"model.link_attribution.{table}"]["columns"]
        assert {name.lower() for name in columns} == set(declared[table]), table

    # 7. PostgreSQL: the BI role reads every mart and nothing else.
    if not target.is_duckdb:
        assert_bi_role_reads_marts_only(target)


def publish(target: Target, dbt_target: Path) -> str:
    """Publishes the marts as every job's last step does, checks that the snapshot equals the marts, and returns
    what the operation says it copied."""
    with publish_marts_args(target, uuid.uuid4().hex) as args:
        proc = run_dbt(target, "run-operation", "publish_marts", "--args", json.dumps(args), target_path=dbt_target)
    assert published_checksums(target) == checksums(Warehouse(target))
    return next(line[line.index("publish_marts:") :] for line in proc.stdout.splitlines() if "publish_marts:" in line)


def assert_by_day_indexes(wh: Warehouse) -> None:
    """PostgreSQL: the marts by day, and their published copies, are indexed on the day and the key that the hourly
    job's deletes and BI's filters by day look rows up by."""
    indexed = wh.query_df(
        "select schemaname, tablename, indexdef from pg_indexes "
        f"where schemaname in ('marts', '{PUBLISHED_SCHEMA}') and tablename like any (array['fct%', 'rpt%'])"
    )
    columns = {
        (row.schemaname, row.tablename, row.indexdef[row.indexdef.rindex("(") + 1 : -1]) for row in indexed.itertuples()
    }
    expected = {(table, column) for table in FACTS for column in ("conversion_date", "conversion_id")}
    expected |= {(table, "report_date") for table in REPORTS_BY_DAY}
    for schema in ("marts", PUBLISHED_SCHEMA):
        assert {(table, column) for s, table, column in columns if s == schema} == expected, schema


def on_day(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    return frame.loc[frame["conversion_date"].astype(str) == day].reset_index(drop=True)


def assert_contracts(wh: Warehouse, manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Contracts are enforced and every mart has exactly its declared columns and types, described."""
    declared = declared_types(manifest)
    assert set(declared) == set(MARTS)
    actual = information_schema_types(wh)
    for table, columns in declared.items():
        assert list(actual[table]) == list(columns), f"{table}: columns differ from the contract"
        for column, data_type in columns.items():
            assert actual[table][column] == normalise_type(data_type), f"{table}.{column}"
        model = manifest["nodes"][f"model.link_attribution.{table}"]
        assert model["description"] and all(col["description"] for col in model["columns"].values()), table
    reports = {f"model.link_attribution.{table}" for table in MARTS if table.startswith("rpt_")}
    dashboards = [e for e in manifest["exposures"].values() if e["type"] == "dashboard"]
    assert any(reports <= set(e["depends_on"]["nodes"]) for e in dashboards)
    return declared


def assert_contents(wh: Warehouse) -> None:
    """Spot checks of every mart on the hand-made world (total revenue 203.33)."""
    credits = marts_df(wh, "fct_attribution_credits", "credit_id")
    assert set(credits["model"]) == set(MODELS)
    assert (credits.groupby("model")["credit_revenue"].sum().astype(float).round(2) == 203.33).all()
    assert credits.loc[credits["link_id"] == "L9", "channel"].isna().all()
    assert credits.loc[credits["link_id"] == "L1", "channel"].eq("instagram").all()

    conversions = marts_df(wh, "fct_conversion_attribution", "conversion_id").set_index("conversion_id")
    assert list(conversions.index) == ["V1", "V2", "V3", "V4"]
    assert not bool(conversions.loc["V4", "is_attributed"])
    identities = marts_df(wh, "dim_identities", "identity_id").set_index("identity_id")
    assert list(identities.index) == ["P1", "P2", "P3", "P4", "P5", "P9"]
    assert identities["n_cookies"].tolist() == [1] * 6
    # P1: clicks K01, K02 and conversion V1; P9's only click is a bot's.
    assert str(identities.loc["P1", "first_seen_at"])[:16] == "2026-01-04 10:00"
    assert str(identities.loc["P1", "last_seen_at"])[:16] == "2026-01-05 10:00"
    assert identities.loc["P1", "last_user_agent"] == "Mozilla/5.0 (K02)"
    assert pd.isna(identities.loc["P9", "first_seen_at"]) and int(identities.loc["P9", "n_fingerprints"]) == 0
    assert int(identities.loc["P5", "n_devices"]) == 1  # a conversion only: its fingerprint is the device
    assert len(marts_df(wh, "match_signal_weights", "signal")) == 4

    facts = conversions
    assert (facts.loc["V2", "original_currency"], float(facts.loc["V2", "original_revenue"])) == ("EUR", 30.0)
    assert (facts.loc["V2", "currency"], float(facts.loc["V2", "revenue"])) == ("USD", 33.33)

    # Every report: one row per day, entity and model; totals are a sum with a where on the model.
    daily = marts_df(wh, "rpt_link_daily", "report_date, link_id, model")
    assert set(daily["model"]) == set(MODELS) and set(daily["currency"]) == {"USD"}
    day5 = daily.loc[(daily["report_date"].astype(str) == DAY_5) & (daily["model"] == "last_touch")]
    day5 = day5.set_index("link_id")
    assert (int(day5.loc["L1", "human_clicks"]), int(day5.loc["L1", "bot_clicks"])) == (0, 1)
    assert int(day5.loc["L2", "unique_identities"]) == 1
    for model, rows in daily.groupby("model"):
        credited = credits.loc[(credits["model"] == model) & ~credits["is_unattributed"].astype(bool)]
        assert float(rows["revenue"].astype(float).sum()) == pytest.approx(
            float(credited["credit_revenue"].astype(float).sum())
        ), model

    channels = marts_df(wh, "rpt_channel_attribution", "model, channel").groupby("model")
    assert set(channels.groups) == set(MODELS)
    assert channels.size().nunique() == 1, "every model has a row for every channel and day"
    assert (channels["revenue"].sum().astype(float).round(2) == 203.33).all()

    creators = marts_df(wh, "rpt_creator_performance", "creator_id")
    creators = creators.loc[creators["model"] == "linear"].groupby("creator_id")
    assert sorted(creators.groups) == ["C1", "C2"]
    assert int(creators["bot_clicks"].sum()["C1"]) == 1
    campaigns = marts_df(wh, "rpt_campaign_performance", "campaign_id")
    assert set(campaigns["campaign_id"]) <= {"K1", "K2"} and set(campaigns["currency"]) == {"USD"}

    # Spend: a link's spend rolls up to its creator, campaign and channel; a creator's or channel's is its own.
    def spend(table: str, entity: str, value: str, day: str, model: str = "linear") -> pd.Series:
        frame = marts_df(wh, table, "report_date")
        on_day = frame["report_date"].astype(str) == day
        rows = frame.loc[(frame[entity] == value) & on_day & (frame["model"] == model)]
        assert len(rows) == 1, (table, value, day)
        return rows.iloc[0]

    c1 = spend("rpt_creator_performance", "creator_id", "C1", DAY_5)
    assert float(c1["spend"]) == 15.5
    assert c1["return_on_spend"] == pytest.approx(round(float(c1["revenue"]) / 15.5, 6), abs=1e-9)
    assert float(spend("rpt_campaign_performance", "campaign_id", "K1", DAY_5)["spend"]) == 10.0
    assert float(spend("rpt_channel_attribution", "channel", "instagram", DAY_5)["spend"]) == 10.0
    assert float(spend("rpt_link_daily", "link_id", "L1", DAY_5)["spend"]) == 10.0
    tiktok = spend("rpt_channel_attribution", "channel", "tiktok", DAY_6)
    assert float(tiktok["spend"]) == 3.0  # L2's spend without a rate is left out
    idle = spend("rpt_creator_performance", "creator_id", "C2", "2026-01-03")
    assert (float(idle["spend"]), int(idle["human_clicks"]), float(idle["return_on_spend"])) == (7.0, 0, 0.0)
    assert pd.isna(idle["cost_per_conversion"])  # spend and no conversions: no ratio, no division error
    no_spend = spend("rpt_creator_performance", "creator_id", "C2", DAY_5)
    assert pd.isna(no_spend["spend"]) and pd.isna(no_spend["return_on_spend"])

    quality = marts_df(wh, "rpt_attribution_quality", "report_date, section, bucket_order")
    overall = quality.loc[quality["section"] == "overall"]
    assert int(overall["conversions"].sum()) == 4 and float(overall["revenue"].astype(float).sum()) == 203.33
    assert (quality["section"] == "confidence_bin").sum() == 10 * 2  # ten bins on each of the two days
    fx = quality.loc[quality["section"] == "fx_status"].groupby("bucket")["conversions"].sum()
    assert fx.to_dict() == {"converted": 1, "same_currency": 3}
    # V2 is labelled by its direct click K04; its other candidate K01 belongs to another identity.
    calibration = quality.loc[quality["section"] == "calibration_bin"]
    assert len(calibration) == 10 * 2
    assert (int(calibration["labelled_pairs"].sum()), int(calibration["positive_pairs"].sum())) == (2, 1)


def assert_bi_role_reads_marts_only(target: Target) -> None:
    import psycopg2
    import psycopg2.errors

    conn = psycopg2.connect(**target.postgres.dsn_kwargs())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("select rolcanlogin from pg_roles where rolname = %s", (BI_ROLE,))
            assert cur.fetchone() == (False,), "the BI role exists and cannot log in"
            cur.execute(
                "select table_schema, table_name, "
                "has_table_privilege(%s, quote_ident(table_schema) || '.' || quote_ident(table_name), 'select'), "
                "has_table_privilege(%s, quote_ident(table_schema) || '.' || quote_ident(table_name), "
                "'insert, update, delete, truncate') "
                "from information_schema.tables where table_schema in ('raw', 'staging', 'intermediate', 'marts')",
                (BI_ROLE, BI_ROLE),
            )
            privileges = {(schema, table): (select, write) for schema, table, select, write in cur.fetchall()}
            assert {t for (s, t) in privileges if s == "marts"} == set(MARTS)
            for (schema, table), (select, write) in privileges.items():
                assert select == (schema == "marts"), f"{schema}.{table}: select privilege {select}"
                assert not write, f"{schema}.{table}: the BI role can write"

            cur.execute(f"set role {BI_ROLE}")
            for table in MARTS:
                cur.execute(f"select count(*) from marts.{table}")
                assert cur.fetchone()[0] > 0, table
            for relation in ("raw.links", "staging.stg_raw__links", "intermediate.attribution_credits"):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(f"select count(*) from {relation}")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("delete from marts.rpt_link_daily")
            cur.execute("reset role")
    finally:
        conn.close()
