"""Credits per conversion, model and touch, revenue split to the cent."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from python_models.attribution.config import (
    _SHARE_EPSILON,
    BASELINE_MODEL,
    DATA_DRIVEN_MODELS,
    DEFAULT_CONFIG,
    OUTPUT_COLUMNS,
    TOUCH_COLUMNS,
    AttributionConfig,
)
from python_models.attribution.data_driven import fit_data_driven
from python_models.attribution.paths import conversion_paths
from python_models.attribution.rules import confidence_shares, grain_shares, rule_weights
from python_models.attribution.touches import select_touches, unattributed_share
from python_models.baseline import SIGNAL_COLUMNS, baseline_pick_rows, require_columns

# --------------------------------------------------------------------------------------------------------
# Attribution
# --------------------------------------------------------------------------------------------------------


def _prepare_conversions(conversions: pd.DataFrame) -> pd.DataFrame:
    require_columns(conversions, ["conversion_id", "revenue"], "conversions")
    duplicated = conversions["conversion_id"].duplicated()
    if duplicated.any():
        examples = conversions.loc[duplicated, "conversion_id"].head(5).tolist()
        raise ValueError(f"conversions: column conversion_id has duplicate values, e.g. {examples}")
    revenue = pd.to_numeric(conversions["revenue"]).astype("float64").fillna(0.0)
    return pd.DataFrame(
        {
            "conversion_id": conversions["conversion_id"].array,
            # Missing revenue counts as 0; amounts are rounded to whole cents once, here.
            "cents": np.rint(revenue.to_numpy() * 100.0).astype("int64"),
        }
    )


def _weights_by_model(
    channel_weights: pd.DataFrame, grain: str, models: Iterable[str], has_touches: bool
) -> dict[str, pd.Series]:
    require_columns(channel_weights, ["model", "grain_value", "weight"], "channel_weights")
    if "grain" in channel_weights.columns:
        grains = set(channel_weights["grain"].dropna().astype("str"))
        if grains - {grain}:
            raise ValueError(
                f"channel_weights: column grain has values {sorted(grains)}, but AttributionConfig.grain is {grain!r}"
            )
    result = {}
    for model in models:
        rows = channel_weights.loc[channel_weights["model"] == model]
        if has_touches and len(rows) == 0:
            raise ValueError(f"channel_weights: column model has no rows for {model!r}")
        # allocation_weight is the per-conversion split that reconciles with the fit; weights given without it
        # (e.g. hand-written) are used as the split directly.
        column = "allocation_weight" if "allocation_weight" in rows.columns else "weight"
        result[model] = (
            pd.Series(rows[column].astype("float64").to_numpy(), index=rows["grain_value"].astype("str").to_numpy())
            .groupby(level=0)
            .sum()
        )
    return result


def _rule_based_rows(candidates: pd.DataFrame, touches: pd.DataFrame, config: AttributionConfig) -> pd.DataFrame:
    picks = baseline_pick_rows(candidates, config.lookback_days)
    positions = touches[["conversion_id", "click_id", "touch_position", "n_touches"]]
    picks = picks.merge(positions, on=["conversion_id", "click_id"], how="left")
    age_days = (picks["converted_at"] - picks["clicked_at"]).dt.total_seconds() / 86400.0
    return pd.DataFrame(
        {
            "conversion_id": picks["conversion_id"],
            "click_id": picks["click_id"],
            "link_id": picks["link_id"],
            # Not every pick is a selected touch (the rule ignores the probability floor): position is then NA.
            "touch_position": picks["touch_position"].astype("Int64"),
            "n_touches": picks["n_touches"].astype("Int64"),
            "match_probability": picks["match_probability"].astype("float64"),
            "decay_weight": np.exp2(-age_days / config.half_life_days),
            "credit_share": picks["confidence"].astype("float64"),
        }
    )


def allocate_cents(shares: pd.DataFrame) -> np.ndarray:
    """Integer cents per row so that each (conversion_id, model) group adds up to its ``cents`` exactly.

    Largest remainder: floor every row's exact amount, then give the missing cents to the largest
    fractional parts (ties: attributed rows by ``click_id``, the unattributed row last). Works for negative
    amounts (refunds) too. Expects columns conversion_id, model, click_id, is_unattributed, credit_share,
    cents.
    """
    if len(shares) == 0:
        return np.zeros(0, dtype="int64")
    # Rounding to 6 decimals of a cent removes float noise such as 49.99999999 before flooring.
    exact = np.round(shares["credit_share"].to_numpy(dtype="float64") * shares["cents"].to_numpy(), 6)
    floored = np.floor(exact)
    group = shares.groupby(["conversion_id", "model"], sort=False).ngroup().to_numpy()
    size = np.bincount(group)[group]
    missing = np.rint(shares["cents"].to_numpy() - np.bincount(group, weights=floored)[group])
    click_order, _ = pd.factorize(shares["click_id"], sort=True)
    unattributed = shares["is_unattributed"].to_numpy(dtype=bool)
    # Within each group: largest fraction first, then attributed rows by click_id, the unattributed row last.
    order = np.lexsort((click_order, unattributed, -(exact - floored), group))
    sorted_group = group[order]
    starts = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
    first_of_group = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    rank_down = np.empty(len(order), dtype="int64")
    rank_down[order] = np.arange(len(order)) - first_of_group
    rank_up = size - 1 - rank_down
    adjustment = (rank_down < missing).astype("int64") - (rank_up < -missing).astype("int64")
    return (floored + adjustment).astype("int64")


def attribute(
    candidates: pd.DataFrame,
    conversions: pd.DataFrame,
    config: AttributionConfig = DEFAULT_CONFIG,
    channel_weights: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Credit rows for every conversion in ``conversions`` and every model in ``config.models``.

    One row per conversion x model x touch with a positive share, plus one row with ``is_unattributed``
    true (click_id and link_id missing) carrying the unattributed share when it is positive. Per conversion
    and model the shares add up to 1 and ``credit_revenue`` adds up to the revenue rounded to cents.
    Conversions without candidates get a single unattributed row per model.

    ``channel_weights`` (model, grain_value, weight[, grain, allocation_weight]) are the fitted Markov /
    Shapley weights, e.g. ``fit_data_driven(paths, config).channel_weights`` over a long window. Each
    conversion is split over its distinct grain values by allocation_weight (weight when absent), so that
    summed over the fitting window's conversions the credits per grain value equal the fitted totals. When
    None they are fitted on the converting paths of ``candidates`` alone (no non-converting paths, so Markov has no null
    transitions) — fine for one-off analysis, but results then depend on which conversions are passed.
    A conversion whose grain values all have weight 0 (unseen when fitting, or with zero effect) is split
    equally over them.
    """
    conversion_frame = _prepare_conversions(conversions)
    require_columns(candidates, TOUCH_COLUMNS, "candidates")
    unknown = ~candidates["conversion_id"].isin(conversion_frame["conversion_id"])
    if unknown.any():
        examples = candidates.loc[unknown, "conversion_id"].drop_duplicates().head(5).tolist()
        raise ValueError(f"candidates: column conversion_id has values missing from conversions, e.g. {examples}")
    if BASELINE_MODEL in config.models:
        require_columns(candidates, SIGNAL_COLUMNS, "candidates")

    touches = select_touches(candidates, config)
    data_driven = [model for model in config.models if model in DATA_DRIVEN_MODELS]
    weights: dict[str, pd.Series] = {}
    if data_driven:
        if channel_weights is None:
            fit = fit_data_driven(conversion_paths(touches, config.grain), config)
            channel_weights = fit.channel_weights
        weights = _weights_by_model(channel_weights, config.grain, data_driven, has_touches=len(touches) > 0)

    touch_columns = ["conversion_id", "click_id", "link_id", "match_probability", "decay_weight"]
    touch_unattributed = touches["conversion_id"].map(unattributed_share(touches)).to_numpy(dtype="float64")
    parts = []
    for model in config.models:
        if model == BASELINE_MODEL:
            rows = _rule_based_rows(candidates, touches, config)
        else:
            if model in DATA_DRIVEN_MODELS:
                share = grain_shares(touches, weights[model], config.grain, touch_unattributed)
            else:
                share = confidence_shares(touches, rule_weights(touches, model, config), False, touch_unattributed)
            rows = touches[touch_columns].assign(
                touch_position=touches["touch_position"].astype("Int64"),
                n_touches=touches["n_touches"].astype("Int64"),
                credit_share=share,
            )
        parts.append(rows.assign(model=model, is_unattributed=False))
    attributed = pd.concat(parts, ignore_index=True)
    attributed = attributed.loc[attributed["credit_share"] > 0]

    # Unattributed share = 1 - attributed shares, for every conversion x model (1 without any touch).
    grid = pd.MultiIndex.from_product(
        [conversion_frame["conversion_id"], list(config.models)], names=["conversion_id", "model"]
    )
    claimed = attributed.groupby(["conversion_id", "model"])["credit_share"].sum().reindex(grid, fill_value=0.0)
    remaining = (1.0 - claimed).clip(lower=0.0)
    remaining = remaining.loc[remaining > _SHARE_EPSILON]
    unattributed = pd.DataFrame(
        {
            "conversion_id": remaining.index.get_level_values("conversion_id"),
            "model": remaining.index.get_level_values("model"),
            "credit_share": remaining.to_numpy(),
            "is_unattributed": True,
        }
    )
    rows = pd.concat([attributed, unattributed], ignore_index=True) if len(unattributed) else attributed
    rows = rows.merge(conversion_frame, on="conversion_id", how="left")
    rows["credit_revenue"] = allocate_cents(rows) / 100.0

    model_order = {model: position for position, model in enumerate(config.models)}
    rows["_model_order"] = rows["model"].map(model_order)
    rows = rows.sort_values(
        ["conversion_id", "_model_order", "is_unattributed", "touch_position", "click_id"],
        kind="mergesort",
        na_position="last",
    )
    return _output_frame(rows, conversions, candidates)


def _nullable_dtype(dtype: object) -> object:
    """The input column's dtype, made able to hold missing values (unattributed rows)."""
    if pd.api.types.is_integer_dtype(dtype) and isinstance(dtype, np.dtype):
        return pd.Int64Dtype()
    if pd.api.types.is_bool_dtype(dtype):
        return pd.BooleanDtype()
    return dtype


def _output_frame(rows: pd.DataFrame, conversions: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    # Key columns keep their input dtypes, so partitions with and without touches concatenate cleanly.
    def key(column: str, source: pd.DataFrame) -> pd.api.extensions.ExtensionArray:
        return rows[column].astype(_nullable_dtype(source[column].dtype)).array

    return pd.DataFrame(
        {
            "conversion_id": key("conversion_id", conversions),
            "model": pd.array(rows["model"].to_numpy(), dtype="str"),
            "click_id": key("click_id", candidates),
            "link_id": key("link_id", candidates),
            "touch_position": pd.array(rows["touch_position"], dtype="Int64"),
            "n_touches": pd.array(rows["n_touches"], dtype="Int64"),
            "match_probability": rows["match_probability"].to_numpy(dtype="float64"),
            "decay_weight": rows["decay_weight"].to_numpy(dtype="float64"),
            "credit_share": rows["credit_share"].to_numpy(dtype="float64"),
            "credit_revenue": rows["credit_revenue"].to_numpy(dtype="float64"),
            "is_unattributed": rows["is_unattributed"].to_numpy(dtype=bool),
        },
        columns=list(OUTPUT_COLUMNS),
    )
