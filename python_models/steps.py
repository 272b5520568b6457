"""The pipeline's per-conversion steps as functions of the frames the assets read: match scores, credits, facts.

Each output row depends only on the input rows of its own conversion (given the small inputs fixed beforehand: the
match model, the fitted channel weights, the configuration), so the steps give the same rows on the whole window
or on any split of it by conversion: DuckDB and PostgreSQL call them on the whole partition window, Spark per
conversion day on its executors (``Warehouse.map_groups``). They never modify their input frames, which may be
shared by several steps. Pure pandas: no I/O.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from python_models.attribution import AttributionConfig, attribute, select_touches
from python_models.confidence import MatchModel, no_unseen_later_click, score_candidates, stated_no_unseen_later_click
from python_models.facts import conversion_facts


def scored_pairs(model: MatchModel, candidates: pd.DataFrame) -> pd.DataFrame:
    """(conversion_id, click_id, conversion_date, match_probability) for every candidate pair; row by row."""
    scores = candidates[["conversion_id", "click_id", "conversion_date"]].copy()
    scores["match_probability"] = score_candidates(candidates, model) if len(candidates) else np.array([], float)
    return scores


def _scored(scored: pd.DataFrame) -> pd.DataFrame:
    """Scored candidates of every conversion event as the steps read them: missing revenue 0, is_conversion a
    plain boolean."""
    return scored.assign(
        revenue=scored["revenue"].astype("float64").fillna(0.0),
        is_conversion=scored["is_conversion"].fillna(False).astype(bool),
    )


def credited_conversions(conversions: pd.DataFrame) -> pd.DataFrame:
    """The conversions of a conversion type, their revenue in the reporting currency (0 without a usable rate:
    credited nothing, and the quality report counts it)."""
    revenue = conversions["revenue"].astype("float64").fillna(0.0)
    credited = conversions.assign(revenue=revenue).loc[conversions["is_conversion"].astype(bool)]
    return credited.assign(revenue=lambda f: f["reporting_revenue"].astype("float64").fillna(0.0))


def conversion_credits(
    config: AttributionConfig,
    channel_weights: pd.DataFrame | None,
    scored: pd.DataFrame,
    conversions: pd.DataFrame,
) -> pd.DataFrame:
    """Credit rows (``attribute``) of the conversions of a conversion type, with their conversion_date.

    ``scored``: scored candidates of every conversion event with ``is_conversion`` and ``revenue``;
    ``conversions``: conversion_id, conversion_date, revenue, is_conversion, reporting_revenue. Per conversion only
    with ``channel_weights`` given (without them the data-driven models are fitted on the frames passed).
    """
    scored = _scored(scored)
    credited = credited_conversions(conversions)
    credits = attribute(
        scored.loc[scored["is_conversion"].to_numpy()].drop(columns="is_conversion"), credited, config, channel_weights
    )
    return credits.merge(credited[["conversion_id", "conversion_date"]], on="conversion_id", how="left")


def conversion_fact_rows(
    config: AttributionConfig,
    model: MatchModel,
    threshold: float,
    scored: pd.DataFrame,
    conversions: pd.DataFrame,
) -> pd.DataFrame:
    """One fact row per conversion event of ``conversions`` (its columns but is_conversion and reporting_revenue,
    then :data:`python_models.facts.FACT_COLUMNS`). The match model also estimates how often an unseen later click
    overtakes a touch: all of it picks the link, half of it enters the stated confidence
    (``python_models/confidence/survival.py`` says why)."""
    scored = _scored(scored).drop(columns="is_conversion")
    conversions = conversions.assign(revenue=conversions["revenue"].astype("float64").fillna(0.0))
    conversions = conversions.drop(columns=["is_conversion", "reporting_revenue"])
    touches = select_touches(scored, config)
    # Without an estimate no touch is discounted for unseen clicks, and a direct click meets every later touch.
    survival = partial(no_unseen_later_click, model) if model.survival_hours else None
    stated = partial(stated_no_unseen_later_click, model) if model.survival_hours else None
    facts = conversion_facts(touches, scored, conversions["conversion_id"], threshold, survival, stated)
    return conversions.merge(facts, on="conversion_id", how="left")
