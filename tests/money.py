"""Money in the reports, recomputed from staging alone: the reference the end-to-end run is compared with.

Independent of int_fx_day_rates, int_conversions and int_spend: rates are looked up here with pandas (latest on or
before the amount's day, at most var fx_max_rate_age_days old), amounts converted with decimals and rounded half
away from zero to the cent, as both engines round numerics. Spend rolls up from links to their creators as the
reports say (spend given for a creator counts for that creator only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from orchestration.settings import dbt_var
from warehouse.client import Warehouse

ENTITY_REPORTS = {"rpt_link_daily": "link_id", "rpt_creator_performance": "creator_id",
                  "rpt_campaign_performance": "campaign_id"}  # fmt: skip
CENT = Decimal("0.01")


@dataclass
class MoneyCheck:
    currencies: set[str] = field(default_factory=set)
    event_types: dict[str, int] = field(default_factory=dict)  # staged events per type
    converted: int = 0  # conversions (of the configured types) converted from another currency
    missing_rate: int = 0  # conversions with revenue in a currency without a usable rate
    credited_non_conversions: int = 0  # credit rows of events that are not of a conversion type
    mismatches: list[str] = field(default_factory=list)
    spend_rows: int = 0  # staged spend rows
    spend_currencies: set[str] = field(default_factory=set)
    spend_missing_rate: int = 0  # staged spend rows in a currency without a usable rate (left out of reports)
    spend_days_checked: int = 0  # (creator, day) pairs whose spend and return were compared
    spend_mismatches: list[str] = field(default_factory=list)


def to_reporting(frame: pd.DataFrame, day: str, amount: str, rates: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with column ``day`` (a timestamp), the rate looked up for its currency, ``missing_rate`` and
    ``reporting_amount`` (Decimal, 0 when missing or no amount): the reference exchange rule for any amount."""
    reporting, base = str(dbt_var("reporting_currency")).upper(), str(dbt_var("fx_base_currency")).upper()
    if reporting != base:
        raise NotImplementedError("the reference converts to the base currency only (the default configuration)")
    max_age = pd.Timedelta(days=int(dbt_var("fx_max_rate_age_days")))
    frame = frame.assign(day=pd.to_datetime(frame[day])).sort_values("day")
    table = rates.assign(day=pd.to_datetime(rates["rate_date"])).sort_values("day")[["day", "currency", "rate"]]
    frame = pd.merge_asof(frame, table, on="day", by="currency", direction="backward", tolerance=max_age)
    has_amount = frame[amount].notna()
    same = frame["currency"] == reporting
    frame["missing_rate"] = has_amount & ~same & frame["rate"].isna()
    frame["reporting_amount"] = [
        (Decimal(str(value)) * (Decimal(1) if is_same else Decimal(str(rate)))).quantize(CENT, ROUND_HALF_UP)
        if has and (is_same or pd.notna(rate))
        else Decimal(0)
        for value, rate, is_same, has in zip(frame[amount], frame["rate"], same, has_amount, strict=True)
    ]
    frame["converted"] = has_amount & ~same & ~frame["missing_rate"]
    return frame


def expected_revenue(conversions: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    """Per staged conversion: is_conversion, whether a rate is missing, and the revenue in the reporting currency."""
    types = {str(t).lower() for t in dbt_var("conversion_event_types")}
    frame = to_reporting(conversions, "converted_date", "revenue", rates)
    frame["is_conversion"] = frame["event_type"].isin(types)
    return frame.rename(columns={"reporting_amount": "reporting_revenue"})


def expected_creator_spend(spend: pd.DataFrame, links: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    """Spend per creator and day in the reporting currency: the creator's own spend plus the spend of their links
    (the roll-up rule of the reports), converted row by row; rows without a usable rate are left out."""
    frame = to_reporting(spend, "spend_date", "amount", rates)
    frame = frame.loc[~frame["missing_rate"]]
    owners = links.set_index("link_id")["creator_id"]
    creator = frame["creator_id"].where(frame["entity_type"] == "creator_id", frame["link_id"].map(owners))
    frame = frame.assign(creator_id=creator).loc[lambda f: f["creator_id"].notna()]
    frame = frame.loc[frame["entity_type"].isin(["creator_id", "link_id"])]
    return frame.assign(report_date=frame["day"].dt.date)


def check_spend(check: MoneyCheck, spend: pd.DataFrame, links: pd.DataFrame, rates: pd.DataFrame,
                report: pd.DataFrame) -> None:  # fmt: skip
    """Per creator and day: the report's spend (the same on every model's row) equals the staged spend converted
    to the reporting currency, and per model return_on_spend equals the row's credited revenue / that spend."""
    check.spend_rows = len(spend)
    check.spend_currencies = set(spend["currency"].dropna())
    check.spend_missing_rate = int(to_reporting(spend, "spend_date", "amount", rates)["missing_rate"].sum())
    want = _sums(expected_creator_spend(spend, links, rates), ["report_date", "creator_id"], "reporting_amount")
    rows = report.assign(day=report["report_date"].map(lambda d: str(pd.Timestamp(d).date())))
    for model, of_model in rows.groupby("model"):
        got = {(d, str(c)): Decimal(str(v)) for d, c, v in zip(of_model["day"], of_model["creator_id"],
               of_model["spend"], strict=True) if pd.notna(v)}  # fmt: skip
        for key in sorted(got.keys() | want.keys()):
            if got.get(key) != want.get(key):
                check.spend_mismatches.append(f"spend {model} {key}: {got.get(key)} != {want.get(key)}")
        for day, creator, revenue, ratio in zip(of_model["day"], of_model["creator_id"], of_model["revenue"],
                                                of_model["return_on_spend"], strict=True):  # fmt: skip
            spent = want.get((day, str(creator)))
            if not spent:
                if pd.notna(ratio):
                    check.spend_mismatches.append(f"return {model} {(day, creator)}: {ratio} without spend")
                continue
            check.spend_days_checked += 1
            expected = float(round(Decimal(str(revenue)) / spent, 6))
            if pd.isna(ratio) or abs(float(ratio) - expected) > 1e-6:
                check.spend_mismatches.append(f"return {model} {(day, creator)}: {ratio} != {expected}")


def _sums(frame: pd.DataFrame, keys: list[str], column: str) -> dict[tuple, Decimal]:
    """Exact decimal sums per key; the first key is a day (date or timestamp), compared as 'YYYY-MM-DD'."""
    out = {}
    for key, values in frame.groupby(keys)[column]:
        parts = key if isinstance(key, tuple) else (key,)
        day = str(pd.Timestamp(parts[0]).date())
        out[(day, *(str(p) for p in parts[1:]))] = sum((Decimal(str(v)) for v in values), Decimal(0))
    return out


def check_report_money(wh: Warehouse) -> MoneyCheck:
    """Every report's revenue per day and model against the converted revenue of the configured conversion types."""
    with wh.connect() as conn:
        conversions = wh.query_df(
            "select conversion_id, converted_date, event_type, revenue, currency from staging.stg_raw__conversions",
            conn,
        )
        rates = wh.query_df("select rate_date, currency, rate from staging.stg_raw__fx_rates", conn)
        spend = wh.query_df(
            "select spend_date, entity_type, link_id, creator_id, amount, currency from staging.stg_raw__spend", conn
        )
        links = wh.query_df("select link_id, creator_id from staging.stg_raw__links", conn)
        credits = wh.query_df(
            "select conversion_id, conversion_date, model, link_id, creator_id, campaign_id, is_unattributed, "
            "credit_revenue from marts.fct_attribution_credits",
            conn,
        )
        names = (*ENTITY_REPORTS, "rpt_channel_attribution")
        reports = {name: wh.query_df(f"select * from marts.{name}", conn) for name in names}
        quality = wh.query_df("select * from marts.rpt_attribution_quality", conn)
    expected = expected_revenue(conversions, rates)
    check = MoneyCheck(
        currencies=set(conversions["currency"].dropna()),
        event_types=conversions["event_type"].value_counts().to_dict(),
        converted=int((expected["converted"] & expected["is_conversion"]).sum()),
        missing_rate=int((expected["missing_rate"] & expected["is_conversion"]).sum()),
    )
    kinds = expected.set_index("conversion_id")["is_conversion"]
    check.credited_non_conversions = int((~credits["conversion_id"].map(kinds).fillna(False).astype(bool)).sum())

    wanted = expected.loc[expected["is_conversion"]].assign(report_date=lambda f: f["day"].dt.date)
    by_day = _sums(wanted, ["report_date"], "reporting_revenue")
    models = sorted(credits["model"].unique())

    def compare(label: str, got: dict[tuple, Decimal], want: dict[tuple, Decimal]) -> None:
        for key in sorted(got.keys() | want.keys()):
            g, w = got.get(key, Decimal(0)), want.get(key, Decimal(0))
            if g != w:
                check.mismatches.append(f"{label} {key}: {g} != {w}")

    # Every model's credits and the channel report (unattributed included) add up to the converted revenue.
    want_models = {(day, m): v for (day,), v in by_day.items() for m in models}
    compare("fct_attribution_credits", _sums(credits, ["conversion_date", "model"], "credit_revenue"), want_models)
    compare("rpt_channel_attribution", _sums(reports["rpt_channel_attribution"], ["report_date", "model"], "revenue"),
            want_models)  # fmt: skip
    # The entity reports carry the credited rows of their entity.
    for name, entity in ENTITY_REPORTS.items():
        credited = credits.loc[~credits["is_unattributed"].astype(bool) & credits[entity].notna()]
        compare(name, _sums(reports[name], ["report_date", "model"], "revenue"),
                _sums(credited, ["conversion_date", "model"], "credit_revenue"))  # fmt: skip
        if set(reports[name]["currency"]) != {str(dbt_var("reporting_currency")).upper()}:
            check.mismatches.append(f"{name}: currency {set(reports[name]['currency'])}")
    overall = quality.loc[quality["section"] == "overall"]
    compare("rpt_attribution_quality overall", _sums(overall, ["report_date"], "revenue"), by_day)
    missing = quality.loc[(quality["section"] == "fx_status") & (quality["bucket"] == "missing_fx_rate")]
    want_missing = wanted.loc[wanted["missing_rate"]].groupby("report_date").size()
    got_missing = missing.groupby("report_date")["conversions"].sum()

    def by_day(counts: pd.Series) -> dict[str, int]:
        return {str(pd.Timestamp(day).date()): int(n) for day, n in counts.items()}

    if by_day(got_missing) != by_day(want_missing):
        check.mismatches.append(f"missing_fx_rate counts {got_missing.to_dict()} != {want_missing.to_dict()}")
    check_spend(check, spend, links, rates, reports["rpt_creator_performance"])
    return check
