"""Attribution: data-driven channel weights (daily) and confidence-weighted credits per conversion day."""

from collections.abc import Iterator
from functools import partial

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.assets.common import OWNERS, PYTHON_SCHEMA, date_where, partition_dates, png_metadata, table_metadata
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
    TOUCH_COLUMNS,
    DataDrivenFit,
    combine_paths,
    conversion_paths,
    fit_data_driven,
    null_paths_from_keys,
    reconciled_totals,
    select_touches,
)
from python_models.attribution import attribute as attribute_conversions
from python_models.confidence import model_from_frame, no_unseen_later_click, stated_no_unseen_later_click
from python_models.confidence.survival import STATED_STALE_WEIGHT
from python_models.facts import conversion_facts
from warehouse.client import Warehouse

# Only events of the configured conversion types (int_conversions.is_conversion) are credited and fitted on.
SCORED_CANDIDATES_SQL = """
select {columns}, s.match_probability
from intermediate.int_match_candidates c
join intermediate.match_scores s on s.conversion_id = c.conversion_id and s.click_id = c.click_id
join intermediate.int_conversions v on v.conversion_id = c.conversion_id and v.is_conversion
where {where}
"""
# Every conversion event's scored candidates, for the facts (a sign-up's last touch is named too).
EVENT_CANDIDATES_SQL = """
select {columns}, v.is_conversion, s.match_probability
from intermediate.int_match_candidates c
join intermediate.match_scores s on s.conversion_id = c.conversion_id and s.click_id = c.click_id
join intermediate.int_conversions v on v.conversion_id = c.conversion_id
where {where}
"""


def _scored_candidates(wh: Warehouse, conn: object, where: str) -> pd.DataFrame:
    """Scored candidates of every conversion event, with ``is_conversion``: credits are given to conversion types
    only, but every event's fact names its last-touch link (a sign-up's last touch is known as well as a
    purchase's; the reports count conversion types only)."""
    frame = wh.query_df(EVENT_CANDIDATES_SQL.format(columns="c.*", where=where), conn)
    frame["revenue"] = frame["revenue"].astype("float64").fillna(0.0)
    frame["is_conversion"] = frame["is_conversion"].fillna(False).astype(bool)
    return frame


def _path_touches(wh: Warehouse, conn: object, where: str, grain: str) -> pd.DataFrame:
    """Only what touch selection and paths read: every candidate column at 10M clicks took ~7 GB of pandas."""
    columns = ", ".join(f"c.{name}" for name in dict.fromkeys([*TOUCH_COLUMNS, grain]) if name != "match_probability")
    return wh.query_df(SCORED_CANDIDATES_SQL.format(columns=columns, where=where), conn)


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
    with wh.connect() as conn:
        scored = _scored_candidates(wh, conn, date_where("c.conversion_date", window))
        conversions = wh.query_df(
            "select v.conversion_id, v.converted_date as conversion_date, v.converted_at, v.event_type, "
            "v.revenue, v.is_conversion, v.reporting_revenue, e.identity_id from intermediate.int_conversions v "
            "left join intermediate.int_event_identities e "
            "on e.event_kind = 'conversion' and e.event_id = v.conversion_id "
            f"where {date_where('v.converted_date', window)}",
            conn,
        )
        # The match model also estimates how often an unseen later click overtakes a touch: all of it picks the
        # facts' link, half of it enters their stated confidence (python_models/confidence/survival.py says why).
        model = model_from_frame(wh.query_df("select * from intermediate.match_model", conn))
        has_weights = wh.table_exists(PYTHON_SCHEMA, "channel_weights", conn)
        weights = wh.query_df("select * from intermediate.channel_weights", conn) if has_weights else None
    conversions["revenue"] = conversions["revenue"].astype("float64").fillna(0.0)
    # Credits split the revenue in the reporting currency; one without a usable rate is credited nothing (0), and
    # the quality report counts it.
    credited = conversions.loc[conversions["is_conversion"].astype(bool)].assign(
        revenue=lambda f: f["reporting_revenue"].astype("float64").fillna(0.0)
    )
    credits = attribute_conversions(
        scored.loc[scored["is_conversion"].to_numpy()].drop(columns="is_conversion"), credited, config, weights
    )
    credits = credits.merge(credited[["conversion_id", "conversion_date"]], on="conversion_id", how="left")
    conversions = conversions.drop(columns=["is_conversion", "reporting_revenue"])
    scored = scored.drop(columns="is_conversion")
    touches = select_touches(scored, config)
    survival = partial(no_unseen_later_click, model)
    stated = partial(stated_no_unseen_later_click, model)
    facts = conversion_facts(
        touches, scored, conversions["conversion_id"], settings.confidence_threshold, survival, stated
    )
    facts = conversions.merge(facts, on="conversion_id", how="left")

    where = date_where("conversion_date", window)
    selected = context.selected_asset_keys
    # One transaction for both tables: a step killed between the two writes must leave the previous credits and
    # facts, never new credits beside deleted facts (DuckDB would otherwise commit each statement on its own).
    with wh.transaction() as conn:
        if ATTRIBUTION_CREDITS in selected:
            wh.replace_rows(credits, PYTHON_SCHEMA, "attribution_credits", where, conn)
        if CONVERSION_ATTRIBUTION in selected:
            wh.replace_rows(facts, PYTHON_SCHEMA, "conversion_attribution", where, conn)
    if ATTRIBUTION_CREDITS in selected:
        yield from _credit_results(credits, credited)
    if CONVERSION_ATTRIBUTION in selected:
        yield from _fact_results(facts, conversions)


def _credit_results(
    credits: pd.DataFrame, conversions: pd.DataFrame
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    errors = conservation_errors(credits, conversions)
    yield dg.MaterializeResult(
        asset_key=ATTRIBUTION_CREDITS,
        metadata={
            "dagster/row_count": len(credits),
            "unattributed_revenue_share": _unattributed_revenue_share(credits),
            "revenue_by_model": _revenue_chart(credits) if len(credits) else dg.MetadataValue.text("no credits"),
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
    facts: pd.DataFrame, conversions: pd.DataFrame
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    attributed = int(facts["is_attributed"].sum())
    yield dg.MaterializeResult(
        asset_key=CONVERSION_ATTRIBUTION,
        metadata={
            "dagster/row_count": len(facts),
            "attributed": attributed,
            "attributed_share": attributed / len(facts) if len(facts) else 0.0,
            "mean_confidence": float(facts["confidence_score"].mean()) if len(facts) else 0.0,
            # Share of the unseen-later-click estimate in the stated confidence (all of it picks the link).
            "stated_unseen_later_click_weight": STATED_STALE_WEIGHT,
        },
    )
    duplicated = int(facts["conversion_id"].duplicated().sum())
    yield dg.AssetCheckResult(
        check_name="one_row_per_conversion",
        asset_key=CONVERSION_ATTRIBUTION,
        passed=duplicated == 0 and len(facts) == len(conversions),
        metadata={"conversions": len(conversions), "rows": len(facts), "duplicated": duplicated},
        description=(
            f"intermediate.conversion_attribution: {len(facts):,} rows for {len(conversions):,} staged conversions, "
            f"{duplicated} duplicated"
        ),
    )
