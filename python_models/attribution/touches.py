"""Touch selection (probability floor, lookback, repeats) and the unattributed share of a conversion."""

from __future__ import annotations

import numpy as np
import pandas as pd

from python_models.attribution.config import DEFAULT_CONFIG, TOUCH_COLUMNS, AttributionConfig
from python_models.baseline import require_columns

# --------------------------------------------------------------------------------------------------------
# Touch selection
# --------------------------------------------------------------------------------------------------------


def _identity_key(frame: pd.DataFrame) -> pd.Series:
    """Click identity as a string; a click without an identity is its own identity."""
    identity = "i:" + frame["click_identity_id"].astype("str")
    return identity.fillna("c:" + frame["click_id"].astype("str"))


def select_touches(candidates: pd.DataFrame, config: AttributionConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """The touches each conversion's models work on, in time order.

    Keeps candidates with ``match_probability >= probability_floor`` clicked in
    ``[converted_at - lookback_days, converted_at]``; collapses exact repeats (same conversion, same click
    identity, same link, each click within ``repeat_seconds`` of the previous one) into the latest click with
    the run's highest probability. Adds ``touch_position`` (1-based by ``clicked_at``, ties by ``click_id``),
    ``n_touches``, ``age_days`` and ``decay_weight`` = 2^(-age_days / half_life_days).
    """
    require_columns(candidates, TOUCH_COLUMNS, "candidates")
    lookback = pd.Timedelta(days=config.lookback_days)
    probability = candidates["match_probability"]
    keep = (
        (probability >= config.probability_floor)
        & (candidates["clicked_at"] <= candidates["converted_at"])
        & (candidates["clicked_at"] >= candidates["converted_at"] - lookback)
    )
    frame = candidates.loc[keep.to_numpy()].reset_index(drop=True)
    frame["match_probability"] = frame["match_probability"].astype("float64")

    # Repeats: runs of clicks by one identity on one link whose gaps are all <= repeat_seconds.
    frame["_identity"] = _identity_key(frame)
    frame["_run_key"] = frame.groupby(["conversion_id", "_identity", "link_id"], dropna=False, sort=False).ngroup()
    frame = frame.sort_values(["_run_key", "clicked_at", "click_id"], kind="mergesort")
    gap = frame["clicked_at"].diff().dt.total_seconds()
    new_run = (frame["_run_key"] != frame["_run_key"].shift()) | (gap > config.repeat_seconds)
    run = new_run.cumsum()
    best_probability = frame.groupby(run)["match_probability"].transform("max")
    is_latest = run != run.shift(-1)
    frame = frame.assign(match_probability=best_probability).loc[is_latest]

    frame = frame.sort_values(["conversion_id", "clicked_at", "click_id"], kind="mergesort")
    by_conversion = frame.groupby("conversion_id", sort=False)
    frame["touch_position"] = (by_conversion.cumcount() + 1).astype("int64")
    frame["n_touches"] = by_conversion["click_id"].transform("size").astype("int64")
    frame["age_days"] = (frame["converted_at"] - frame["clicked_at"]).dt.total_seconds() / 86400.0
    frame["decay_weight"] = np.exp2(-frame["age_days"] / config.half_life_days)
    return frame.drop(columns=["_identity", "_run_key"]).reset_index(drop=True)


def unattributed_share(touches: pd.DataFrame) -> pd.Series:
    """U per conversion: product over distinct click identities of (1 - max probability in the identity).

    Indexed by conversion_id; only conversions with touches appear (a conversion without touches has U = 1).
    """
    frame = touches.assign(_identity=_identity_key(touches))
    best = frame.groupby(["conversion_id", "_identity"], sort=False)["match_probability"].max()
    return (1.0 - best).groupby(level="conversion_id", sort=False).prod().rename("unattributed_share")


def last_touch_pick(touches: pd.DataFrame) -> pd.DataFrame:
    """The latest touch per conversion (from :func:`select_touches`), for the one-row-per-conversion fact."""
    require_columns(touches, ["conversion_id", "click_id", "link_id", "touch_position", "n_touches"], "touches")
    last = touches.loc[touches["touch_position"] == touches["n_touches"]]
    columns = ["conversion_id", "click_id", "link_id", "match_probability"]
    return last[columns].sort_values("conversion_id", kind="mergesort").reset_index(drop=True)
