"""Rule-based model weights (first, last, linear, time decay, position based) and confidence-weighted shares."""

from __future__ import annotations

import numpy as np
import pandas as pd

from python_models.attribution.config import DEFAULT_CONFIG, RULE_MODELS, UNKNOWN_GRAIN, AttributionConfig
from python_models.attribution.touches import unattributed_share
from python_models.baseline import require_columns

# --------------------------------------------------------------------------------------------------------
# Model weights and confidence-weighted shares
# --------------------------------------------------------------------------------------------------------


def share_in_group(weight: np.ndarray, group_total: np.ndarray, group_size: np.ndarray) -> np.ndarray:
    """Each member's ``weight / group_total``; an equal ``1 / group_size`` where the group weighs nothing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(group_total > 0, weight / group_total, 1.0 / np.maximum(group_size, 1))


def rule_weights(touches: pd.DataFrame, model: str, config: AttributionConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Model weight w of every touch for the position/time rules (before probability weighting)."""
    position = touches["touch_position"].to_numpy()
    n = touches["n_touches"].to_numpy()
    if model == "first_touch":
        return (position == 1).astype("float64")
    if model == "last_touch":
        return (position == n).astype("float64")
    if model == "linear":
        return np.ones(len(touches))
    if model == "time_decay":
        return np.exp2(-touches["age_days"].to_numpy(dtype="float64") / config.half_life_days)
    if model == "position_based":
        first, middle, last = config.position_weights
        ends = first + last
        # Two touches split the end weights between them (40/40 -> 50/50); one touch takes everything.
        two_first, two_last = (first / ends, last / ends) if ends > 0 else (0.5, 0.5)
        many = np.where(position == 1, first, np.where(position == n, last, middle / np.maximum(n - 2, 1)))
        two = np.where(position == 1, two_first, two_last)
        return np.where(n == 1, 1.0, np.where(n == 2, two, many)).astype("float64")
    raise ValueError(f"rule_weights: unknown rule model {model!r}; expected one of {RULE_MODELS}")


def grain_values(frame: pd.DataFrame, grain: str) -> pd.Series:
    """The grain value of each touch as a string; missing values become ``(unknown)``."""
    require_columns(frame, [grain], "touches")
    return frame[grain].astype("str").fillna(UNKNOWN_GRAIN)


def confidence_shares(
    touches: pd.DataFrame,
    weights: np.ndarray,
    fallback_to_equal: bool = False,
    touch_unattributed: np.ndarray | None = None,
) -> np.ndarray:
    """share_i = (1 - U) * w_i p_i / sum_j w_j p_j within each conversion.

    With ``fallback_to_equal`` a conversion whose touches all have weight 0 (data-driven models: only
    unseen or zero-effect grain values) is split with equal weights instead; otherwise its attributed
    share is 0 and the whole conversion stays unattributed. ``touch_unattributed`` is U of each touch's
    conversion when already known (it is the same for every model).
    """
    codes, _ = pd.factorize(touches["conversion_id"])
    weights = np.asarray(weights, dtype="float64")
    if fallback_to_equal:
        total_weight = np.bincount(codes, weights=weights)[codes] if len(codes) else weights
        weights = np.where(total_weight > 0, weights, 1.0)
    raw = weights * touches["match_probability"].to_numpy(dtype="float64")
    total = np.bincount(codes, weights=raw)[codes] if len(codes) else raw
    if touch_unattributed is None:
        touch_unattributed = touches["conversion_id"].map(unattributed_share(touches)).to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, (1.0 - touch_unattributed) * raw / total, 0.0)


def grain_shares(
    touches: pd.DataFrame, weights: pd.Series, grain: str, touch_unattributed: np.ndarray | None = None
) -> np.ndarray:
    """Data-driven shares: (1 - U) split over each conversion's *distinct* grain values in proportion to
    ``weights`` (allocation weights indexed by grain value; unseen values weigh 0), then within a grain value
    over its touches in proportion to match probability.

    Splitting over distinct values, not touches, is what makes the credits add up to the fitted totals (see
    :mod:`python_models.attribution.allocation`): the fit counts a conversion once per path, not once per
    click. A conversion whose values all weigh 0 is split equally over its values.
    """
    if len(touches) == 0:
        return np.zeros(0)
    values = grain_values(touches, grain)
    conversion_codes, _ = pd.factorize(touches["conversion_id"])
    pair_codes, _ = pd.factorize(pd.MultiIndex.from_arrays([conversion_codes, values.to_numpy()]))
    first = np.unique(pair_codes, return_index=True)[1]
    pair_conversion = conversion_codes[first]
    pair_weight = values.map(weights).fillna(0.0).to_numpy(dtype="float64")[first]
    conversion_weight = np.bincount(pair_conversion, weights=pair_weight)
    pairs_per_conversion = np.bincount(pair_conversion)
    pair_share = share_in_group(pair_weight, conversion_weight[pair_conversion], pairs_per_conversion[pair_conversion])
    probability = touches["match_probability"].to_numpy(dtype="float64")
    pair_probability = np.bincount(pair_codes, weights=probability)
    pair_touches = np.bincount(pair_codes)
    within = share_in_group(probability, pair_probability[pair_codes], pair_touches[pair_codes])
    if touch_unattributed is None:
        touch_unattributed = touches["conversion_id"].map(unattributed_share(touches)).to_numpy(dtype="float64")
    return (1.0 - touch_unattributed) * pair_share[pair_codes] * within
