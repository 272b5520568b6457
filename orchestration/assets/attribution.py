"""Attribution: data-driven channel weights (daily) and confidence-weighted credits per conversion day."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from functools import partial

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.assets.common import (
    OWNERS,
    PYTHON_SCHEMA,
    date_where,
    partition_dates,
    png_metadata,
    refresh_scope_metadata,
    table_metadata,
)
from orchestration.assets.keys import (
    ATTRIBUTION_CREDITS,
    CHANNEL_WEIGHTS,
    CONVERSION_ATTRIBUTION,
    INT_CHANNEL_FIT_WINDOW,
    INT_CONVERSIONS,
    INT_EVENT_IDENTITIES,
    INT_MATCH_CANDIDATES,
    INT_NON_CONVERTING_PATHS,
    MATCH_MODEL,
    MATCH_SCORES,
)
from orchestration.partitions import DAILY_PARTITIONS
from orchestration.resources import WarehouseResource
from orchestration.settings import PipelineSettings
from python_models.attribution import (
    DATA_DRIVEN_MODELS,
    TOUCH_COLUMNS,
    DataDrivenFit,
    combine_paths,
    conversion_paths,
    fit_data_driven,
    null_paths_from_keys,
    reconciled_totals,
    select_touches,
)
from python_models.confidence import model_from_frame
from python_models.confidence.survival import STATED_STALE_WEIGHT
from python_models.facts import FACT_SIGNAL_COLUMNS
from python_models.steps import conversion_credits, conversion_fact_rows, credited_conversions
from warehouse.client import Warehouse

# Only events of the configured conversion types (int_conversions.is_conversion) are credited and fitted on.
SCORED_CANDIDATES_SQL = """
select {columns}, s.match_probability
from intermediate.int_match_candidates c
join intermediate.match_scores s on s.conversion_id = c.conversion_id and s.click_id = c.click_id
join intermediate.int_conversions v on v.conversion_id = c.conversion_id and v.is_conversion
where {where}
"""
# Every conversion event's scored candidates, with is_conversion: credits are given to conversion types only, but
# every event's fact names its last-touch link (a sign-up's last touch is known as well as a purchase's; the
# reports count conversion types only).
EVENT_CANDIDATES_SQL = """
select {columns}, v.is_conversion, s.match_probability
from intermediate.int_match_candidates c
join intermediate.match_scores s on s.conversion_id = c.conversion_id and s.click_id = c.click_id
join intermediate.int_conversions v on v.conversion_id = c.conversion_id
where {where}
"""
# Every conversion event of the window with its identity, for the credits (conversion types) and the facts.
CONVERSIONS_SQL = """
select v.conversion_id, v.converted_date as conversion_date, v.converted_at, v.event_type, v.revenue,
    v.is_conversion, v.reporting_revenue, e.identity_id
from intermediate.int_conversions v
left join intermediate.int_event_identities e on e.event_kind = 'conversion' and e.event_id = v.conversion_id
where {where}
"""


def _candidate_columns(*names: str) -> str:
    """``c.<name>`` for each candidate column named, once; match_probability comes from the scores."""
    return ", ".join(f"c.{name}" for name in dict.fromkeys(names) if name != "match_probability")


def _path_touches(wh: Warehouse, conn: object, where: str, grain: str) -> pd.DataFrame:
    """Only what touch selection and paths read: every candidate column at 10M clicks took ~7 GB of pandas."""
    columns = _candidate_columns(*TOUCH_COLUMNS, grain)
    return wh.query_df(SCORED_CANDIDATES_SQL.format(columns=columns, where=where), conn)


def _step_columns(grain: str) -> str:
    """The candidate columns the credits and the facts read (touches, the grain, the signal flags, the conversion's
    day and revenue): every column took the PostgreSQL run at L past 4 GB."""
    return _candidate_columns(*TOUCH_COLUMNS, grain, *FACT_SIGNAL_COLUMNS, "conversion_date", "revenue")


@dg.asset(
    key=CHANNEL_WEIGHTS,
    deps=[MATCH_SCORES, INT_CHANNEL_FIT_WINDOW, INT_NON_CONVERTING_PATHS, INT_CONVERSIONS],
    group_name="attribution",
    owners=OWNERS,
    kinds={"python", "numpy"},
    description=(
        "Markov removal effects and Shapley values per grain value, fitted over recent journeys "
        "(grain: ATTRIBUTION_GRAIN). Refitted by the daily job."
    ),
    pool="warehouse",
)
def channel_weights(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: dg.ResourceParam[PipelineSettings]
) -> dg.MaterializeResult:
    wh = warehouse.get()
    config = settings.attribution_config()
    with wh.connect() as conn:
        starts_after = wh.scalar("select starts_after from intermediate.int_channel_fit_window", conn)
        where = f"c.conversion_date > cast('{starts_after}' as date)" if starts_after is not None else "1 = 1"
        scored = _path_touches(wh, conn, where, config.grain)
        null_counts = wh.query_df("select path_key, identities from intermediate.int_non_converting_paths", conn)
    touches = select_touches(scored, config)
    paths = combine_paths(
        conversion_paths(touches, config.grain),
        null_paths_from_keys(null_counts["path_key"], null_counts["identities"]),
    )
    fit = fit_data_driven(paths, config)
    values = pd.concat(
        [
            fit.markov[["channel", "removal_effect"]]
            .rename(columns={"removal_effect": "value"})
            .assign(model="markov"),
            fit.shapley[["channel", "shapley_value"]]
            .rename(columns={"shapley_value": "value"})
            .assign(model="shapley"),
        ]
    ).rename(columns={"channel": "grain_value"})
    weights = fit.channel_weights.merge(values, on=["model", "grain_value"], how="left")
    wh.replace_table(weights, PYTHON_SCHEMA, "channel_weights")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(weights),
            "grain": config.grain,
            "converting_paths": int((paths["conversions"] > 0).sum()),
            "non_converting_paths": int((paths["nulls"] > 0).sum()),
            "weights": table_metadata(weights),
            **_reconciliation_gaps(paths, fit),
        }
    )


def _reconciliation_gaps(paths: pd.DataFrame, fit: DataDrivenFit) -> dict[str, float]:
    """Per model, the largest relative gap between a grain value's credits (summed over the fitted conversions)
    and its fitted total: 0 when reachable; above 0 when conversions on one value alone exceed its total."""
    total = float(paths["conversions"].sum())
    gaps = {}
    for model, frame in fit.channel_weights.groupby("model"):
        fitted = frame.set_index("grain_value")["weight"] * total
        reached = reconciled_totals(paths, frame.set_index("grain_value")["allocation_weight"]).reindex(fitted.index)
        relative = (reached.fillna(0.0) - fitted).abs() / fitted.where(fitted > 0)
        gaps[f"{model}_max_reconciliation_gap"] = float(relative.max()) if relative.notna().any() else 0.0
    return gaps


def _revenue_chart(credits: pd.DataFrame) -> dg.MetadataValue:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_model = (
        credits.assign(kind=np.where(credits["is_unattributed"], "unattributed", "credited"))
        .pivot_table(index="model", columns="kind", values="credit_revenue", aggfunc="sum", fill_value=0.0)
        .reindex(columns=["credited", "unattributed"], fill_value=0.0)
    )
    fig, ax = plt.subplots(figsize=(6, 3.5))
    by_model.plot.barh(stacked=True, ax=ax, color=["#2b7bba", "#cccccc"])
    ax.set_xlabel("revenue")
    ax.set_title("Revenue by attribution model")
    value = png_metadata(fig)
    plt.close(fig)
    return value


def _unattributed_revenue_share(credits: pd.DataFrame) -> float:
    """Share of the partition's revenue (summed over models) that no touch could be credited with."""
    total = float(credits["credit_revenue"].sum())
    return float(credits.loc[credits["is_unattributed"], "credit_revenue"].sum()) / total if total else 0.0


def conservation_errors(credits: pd.DataFrame, conversions: pd.DataFrame) -> dict[str, int]:
    """Per model: conversions whose shares do not sum to 1, and whether revenue is conserved to the cent."""
    shares = credits.groupby(["model", "conversion_id"])["credit_share"].sum()
    bad_shares = (shares - 1.0).abs() > 1e-6
    revenue = credits.groupby("model")["credit_revenue"].sum()
    total = float(conversions["revenue"].round(2).sum())
    bad_revenue = ((revenue - total).abs() > 0.005).sum()
    return {"share_errors": int(bad_shares.sum()), "revenue_errors": int(bad_revenue)}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ATTRIBUTION_CREDITS,
            deps=[INT_MATCH_CANDIDATES, MATCH_SCORES, CHANNEL_WEIGHTS, INT_CONVERSIONS],
            description=(
                "Credit of every conversion (of the configured event types) per model and touch, plus its unattributed "
                "share, in the reporting currency. If credit_conservation "
                "fails, the metadata counts the conversions and models off; rerun the partition (a crash mid-write "
                "leaves the previous credits, never half of them)."
            ),
            group_name="attribution",
            owners=OWNERS,
            kinds={"python", "pandas"},
        ),
        dg.AssetSpec(
            CONVERSION_ATTRIBUTION,
            deps=[INT_MATCH_CANDIDATES, MATCH_SCORES, MATCH_MODEL, INT_CONVERSIONS, INT_EVENT_IDENTITIES],
            description=(
                "One row per conversion: last-touch link, calibrated confidence, signals. Conversions missing here "
                "were rejected in staging: look at staging.rejected_rows for their reason."
            ),
            group_name="attribution",
            owners=OWNERS,
            kinds={"python", "pandas"},
        ),
    ],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # Subsettable so an operator can rebuild one table alone, and because Dagster 1.13 compares the two keys'
    # backfill subsets with tuple inequality, which intermittently rejects a UI backfill of a non-subsettable
    # partitioned multi-asset ("Targeted subset must match ...", depending on hash seed).
    can_subset=True,
    check_specs=[
        dg.AssetCheckSpec(
            "credit_conservation",
            asset=ATTRIBUTION_CREDITS,
            blocking=True,
            description="Per conversion and model shares sum to 1; per model revenue is conserved to the cent.",
        ),
        dg.AssetCheckSpec(
            "one_row_per_conversion",
            asset=CONVERSION_ATTRIBUTION,
            blocking=True,
            description="Every staged conversion of the partition has exactly one attribution row.",
        ),
    ],
    pool="warehouse",
)
def attribution(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: dg.ResourceParam[PipelineSettings]
):
    wh = warehouse.get()
    config = settings.attribution_config()
    window = partition_dates(context)
    where = date_where("conversion_date", window)
    selected = context.selected_asset_keys
    with wh.connect() as conn:
        # Small, read on the driver and handed to every group: the match model (its unseen-later-click estimate
        # picks the facts' link) and the fitted channel weights.
        model = model_from_frame(wh.query_df("select * from intermediate.match_model", conn))
        has_weights = wh.table_exists(PYTHON_SCHEMA, "channel_weights", conn)
        weights = wh.query_df("select * from intermediate.channel_weights", conn) if has_weights else None
        steps = {}
        if ATTRIBUTION_CREDITS in selected:
            steps["attribution_credits"] = partial(conversion_credits, config, weights)
        if CONVERSION_ATTRIBUTION in selected:
            steps["conversion_attribution"] = partial(
                conversion_fact_rows, config, model, settings.confidence_threshold
            )
        # Per conversion day on Spark; without fitted weights the data-driven models are fitted on the frames
        # given, so the window stays one group.
        data_driven = weights is None and any(m in DATA_DRIVEN_MODELS for m in config.models)
        grouped = wh.map_groups(
            steps,
            [
                EVENT_CANDIDATES_SQL.format(
                    columns=_step_columns(config.grain), where=date_where("c.conversion_date", window)
                ),
                CONVERSIONS_SQL.format(where=date_where("v.converted_date", window)),
            ],
            key=None if data_driven else "conversion_date",
            schema=PYTHON_SCHEMA,
            conn=conn,
        )
    # One transaction for both tables: a step killed between the two writes must leave the previous credits and
    # facts, never new credits beside deleted facts (DuckDB would otherwise commit each statement on its own).
    with wh.transaction() as conn:
        for table, rows in grouped.rows.items():
            wh.replace_rows(rows, PYTHON_SCHEMA, table, where, conn)
    scope = refresh_scope_metadata(context)
    if grouped.inputs is not None:
        conversions = grouped.inputs[1]
        if ATTRIBUTION_CREDITS in selected:
            credits = grouped.rows["attribution_credits"]
            yield from _credit_results(_credit_summary(credits, credited_conversions(conversions)), scope)
        if CONVERSION_ATTRIBUTION in selected:
            yield from _fact_results(_fact_summary(grouped.rows["conversion_attribution"], len(conversions)), scope)
    else:
        with wh.connect() as conn:
            if ATTRIBUTION_CREDITS in selected:
                yield from _credit_results(_spark_credit_summary(wh, conn, window), scope)
            if CONVERSION_ATTRIBUTION in selected:
                yield from _fact_results(_spark_fact_summary(wh, conn, window), scope)


@dataclass(frozen=True)
class CreditSummary:
    """What the credits' metadata and check read: rows, revenue per model and kind, conservation errors."""

    rows: int
    by_model: pd.DataFrame  # model, is_unattributed, credit_revenue (summed)
    errors: dict[str, int]


@dataclass(frozen=True)
class FactSummary:
    rows: int
    conversions: int
    attributed: int
    mean_confidence: float
    duplicated: int


def _credit_summary(credits: pd.DataFrame, conversions: pd.DataFrame) -> CreditSummary:
    by_model = credits.groupby(["model", "is_unattributed"], as_index=False)["credit_revenue"].sum()
    return CreditSummary(len(credits), by_model, conservation_errors(credits, conversions))


def _fact_summary(facts: pd.DataFrame, conversions: int) -> FactSummary:
    return FactSummary(
        rows=len(facts),
        conversions=conversions,
        attributed=int(facts["is_attributed"].sum()),
        mean_confidence=float(facts["confidence_score"].mean()) if len(facts) else 0.0,
        duplicated=int(facts["conversion_id"].duplicated().sum()),
    )


# On Spark the credits and facts stay on the executors: their metadata is aggregated from the rows written for the
# window, with the same meaning as conservation_errors and _fact_summary. bround rounds half to even, as pandas.
SPARK_CREDIT_SQL = {
    "by_model": "select model, is_unattributed, sum(credit_revenue) as credit_revenue, count(*) as n "
    "from intermediate.attribution_credits where {where} group by model, is_unattributed",
    "share_errors": "select count(*) from (select sum(credit_share) as s from intermediate.attribution_credits "
    "where {where} group by model, conversion_id) t where abs(s - 1.0) > 1e-6",
    "revenue": "select coalesce(sum(bround(coalesce(cast(reporting_revenue as double), 0.0), 2)), 0.0) "
    "from intermediate.int_conversions where is_conversion and {converted}",
}
SPARK_FACT_SQL = """
select count(*) as n, coalesce(sum(case when is_attributed then 1 else 0 end), 0) as attributed,
    avg(confidence_score) as mean_confidence, count(*) - count(distinct conversion_id) as duplicated,
    (select count(*) from intermediate.int_conversions where {converted}) as conversions
from intermediate.conversion_attribution where {where}
"""


def _spark_credit_summary(wh: Warehouse, conn: object, window: tuple[date, date] | None) -> CreditSummary:
    where, converted = date_where("conversion_date", window), date_where("converted_date", window)
    by_model = wh.query_df(SPARK_CREDIT_SQL["by_model"].format(where=where), conn)
    share_errors = int(wh.scalar(SPARK_CREDIT_SQL["share_errors"].format(where=where), conn))
    total = float(wh.scalar(SPARK_CREDIT_SQL["revenue"].format(converted=converted), conn))
    revenue = by_model.groupby("model")["credit_revenue"].sum()
    errors = {"share_errors": share_errors, "revenue_errors": int(((revenue - total).abs() > 0.005).sum())}
    rows = int(by_model["n"].sum())
    return CreditSummary(rows, by_model[["model", "is_unattributed", "credit_revenue"]], errors)


def _spark_fact_summary(wh: Warehouse, conn: object, window: tuple[date, date] | None) -> FactSummary:
    where, converted = date_where("conversion_date", window), date_where("converted_date", window)
    row = wh.query_df(SPARK_FACT_SQL.format(where=where, converted=converted), conn).iloc[0]
    n = int(row["n"])
    return FactSummary(
        rows=n,
        conversions=int(row["conversions"]),
        attributed=int(row["attributed"]),
        mean_confidence=float(row["mean_confidence"]) if n else 0.0,
        duplicated=int(row["duplicated"]),
    )


def _credit_results(
    summary: CreditSummary, scope: dict[str, dg.MetadataValue]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    errors = summary.errors
    yield dg.MaterializeResult(
        asset_key=ATTRIBUTION_CREDITS,
        metadata={
            "dagster/row_count": summary.rows,
            "unattributed_revenue_share": _unattributed_revenue_share(summary.by_model),
            "revenue_by_model": (
                _revenue_chart(summary.by_model) if summary.rows else dg.MetadataValue.text("no credits")
            ),
            **scope,
        },
    )
    yield dg.AssetCheckResult(
        check_name="credit_conservation",
        asset_key=ATTRIBUTION_CREDITS,
        passed=errors["share_errors"] == 0 and errors["revenue_errors"] == 0,
        metadata=errors,
        description=(
            f"intermediate.attribution_credits: {errors['share_errors']} conversion-model pairs whose shares do not "
            f"sum to 1, {errors['revenue_errors']} models whose revenue is not conserved to the cent"
        ),
    )


def _fact_results(
    summary: FactSummary, scope: dict[str, dg.MetadataValue]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    rows, conversions, duplicated = summary.rows, summary.conversions, summary.duplicated
    yield dg.MaterializeResult(
        asset_key=CONVERSION_ATTRIBUTION,
        metadata={
            "dagster/row_count": rows,
            "attributed": summary.attributed,
            "attributed_share": summary.attributed / rows if rows else 0.0,
            "mean_confidence": summary.mean_confidence,
            # Share of the unseen-later-click estimate in the stated confidence (all of it picks the link).
            "stated_unseen_later_click_weight": STATED_STALE_WEIGHT,
            **scope,
        },
    )
    yield dg.AssetCheckResult(
        check_name="one_row_per_conversion",
        asset_key=CONVERSION_ATTRIBUTION,
        passed=duplicated == 0 and rows == conversions,
        metadata={"conversions": conversions, "rows": rows, "duplicated": duplicated},
        description=(
            f"intermediate.conversion_attribution: {rows:,} rows for {conversions:,} staged conversions, "
            f"{duplicated} duplicated"
        ),
    )
