"""`attribution report`: a plain-text summary of the current warehouse, section by section as tables exist."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from warehouse.client import Warehouse

# Each raw table's key as a text expression; rates and spend are keyed by several columns (all text in raw).
RAW_KEYS = {
    "links": "link_id",
    "clicks": "click_id",
    "conversions": "conversion_id",
    "fx_rates": "coalesce(rate_date, '') || '|' || coalesce(currency, '')",
    "spend": " || '|' || ".join(
        f"coalesce({column}, '')"
        for column in ("spend_date", "link_id", "campaign_id", "creator_id", "channel", "currency")
    ),
}


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "  (none)"
    return "\n".join("  " + line for line in df.to_string(index=False).splitlines())


def _raw_section(wh: Warehouse, conn: object) -> str:
    rows = []
    for table, key in RAW_KEYS.items():
        if wh.table_exists("raw", table, conn):
            df = wh.query_df(f"select count(*) as n_rows, count(distinct {key}) as n_keys from raw.{table}", conn)
            rows.append({"table": f"raw.{table}", "rows": int(df.n_rows[0]), "distinct keys": int(df.n_keys[0])})
    return "Raw\n" + _table(pd.DataFrame(rows))


def _staging_section(wh: Warehouse, conn: object) -> str:
    parts = []
    rows = []
    for table in RAW_KEYS:
        if wh.table_exists("staging", f"stg_raw__{table}", conn):
            n = wh.scalar(f"select count(*) from staging.stg_raw__{table}", conn)
            rows.append({"table": f"staging.stg_raw__{table}", "rows": int(n)})
    if rows:
        parts.append("Staging\n" + _table(pd.DataFrame(rows)))
    if wh.table_exists("staging", "rejected_rows", conn):
        rejected = wh.query_df(
            "select source_table, reason, count(*) as n from staging.rejected_rows "
            "group by source_table, reason order by source_table, n desc",
            conn,
        )
        parts.append("Rejected rows by reason\n" + _table(rejected))
    if wh.table_exists("staging", "stg_raw__clicks", conn):
        bots = wh.query_df(
            "select coalesce(bot_reason, 'human') as kind, count(*) as clicks from staging.stg_raw__clicks "
            "group by 1 order by clicks desc",
            conn,
        )
        parts.append("Clicks by bot reason (row-level rules)\n" + _table(bots))
    return "\n\n".join(parts)


def _attribution_section(wh: Warehouse, conn: object) -> str:
    parts = []
    if wh.table_exists("marts", "fct_conversion_attribution", conn):
        summary = wh.query_df(
            "select count(*) as conversions, "
            "sum(case when is_attributed then 1 else 0 end) as attributed, "
            "round(cast(avg(case when is_attributed then confidence_score end) as numeric), 3) as avg_confidence, "
            "round(cast(sum(revenue) as numeric), 2) as revenue, "
            "round(cast(sum(case when is_attributed then revenue else 0 end) as numeric), 2) as attributed_revenue, "
            "sum(case when fx_status = 'missing_fx_rate' then 1 else 0 end) as missing_fx_rate, "
            "min(currency) as currency "
            "from marts.fct_conversion_attribution where is_conversion",
            conn,
        )
        parts.append("Conversions (last-touch pick, calibrated confidence)\n" + _table(summary))
    if wh.table_exists("marts", "fct_attribution_credits", conn):
        by_model = wh.query_df(
            "select model, round(cast(sum(case when is_unattributed then 0 else credit_revenue end) as numeric), 2)"
            " as credited_revenue, round(cast(sum(case when is_unattributed then credit_revenue else 0 end)"
            " as numeric), 2) as unattributed_revenue from marts.fct_attribution_credits group by model order by model",
            conn,
        )
        parts.append("Revenue by attribution model\n" + _table(by_model))
    return "\n\n".join(parts)


SECTIONS: tuple[Callable[[Warehouse, object], str], ...] = (
    _raw_section,
    _staging_section,
    _attribution_section,
)


def build_report(wh: Warehouse) -> str:
    with wh.connect() as conn:
        sections = [s(wh, conn) for s in SECTIONS]
    body = "\n\n".join(s for s in sections if s)
    return f"Warehouse summary — {wh.target.describe()}\nBI reads: {wh.target.describe_published()}\n\n{body}\n"
