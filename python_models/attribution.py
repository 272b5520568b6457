"""Confidence-weighted multi-touch attribution: touch selection, eight models, credits to the cent.

Input is one row per (conversion, candidate click) with a calibrated ``match_probability`` p = P(the click was
made by the converting person). Every model gives each touch a model weight w (first/last/linear/time decay/
position based, or a fitted Markov / Shapley weight of the touch's grain value) and splits the conversion as

    U       = prod over distinct click identities k of (1 - max_{i in k} p_i)      (unattributed share)
    share_i = (1 - U) * w_i p_i / sum_j w_j p_j

U is the probability that none of the touches was made by the converter. Clicks of the same identity are the
same person, so they are one piece of evidence, not independent draws: within an identity only the most
probable click counts (clicks without an identity are their own identity). U is taken over the selected
touches (after the probability floor, lookback and repeat collapsing), so evidence below the floor stays
unattributed rather than being credited to nobody in particular. ``rule_based`` is the original
app's fixed-confidence rule (:mod:`python_models.baseline`): the picked click gets ``confidence``, the rest
stays unattributed.

Revenue credits are rounded to cents with the largest-remainder method per conversion and model (ties: the
attributed rows by ``click_id``, the unattributed row last), so per model the credits, unattributed included,
add up to each conversion's revenue in cents exactly.

Everything here works conversion by conversion once Markov / Shapley weights are given, so ``attribute`` can
run on the whole history, one day partition or one group of a distributed ``groupby().apply`` and give the
same rows. Pure functions: no I/O, no Dagster, dbt or database imports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from python_models.baseline import SIGNAL_COLUMNS, baseline_pick_rows, require_columns

RULE_MODELS: tuple[str, ...] = ("first_touch", "last_touch", "linear", "time_decay", "position_based")
DATA_DRIVEN_MODELS: tuple[str, ...] = ("markov", "shapley")
BASELINE_MODEL = "rule_based"
MODELS: tuple[str, ...] = (*RULE_MODELS, *DATA_DRIVEN_MODELS, BASELINE_MODEL)
GRAINS: tuple[str, ...] = ("channel", "link_id", "campaign_id", "creator_id")

# Markov chain states that are not grain values.
START, CONVERSION, NULL = "(start)", "(conversion)", "(null)"
# Grain value used when a touch has none (e.g. a click on a link unknown to `links`).
UNKNOWN_GRAIN = "(unknown)"

TOUCH_COLUMNS: tuple[str, ...] = (
    "conversion_id",
    "click_id",
    "link_id",
    "converted_at",
    "clicked_at",
    "click_identity_id",
    "match_probability",
)
OUTPUT_COLUMNS: tuple[str, ...] = (
    "conversion_id",
    "model",
    "click_id",
    "link_id",
    "touch_position",
    "n_touches",
    "match_probability",
    "decay_weight",
    "credit_share",
    "credit_revenue",
    "is_unattributed",
)
PATH_COLUMNS: tuple[str, ...] = ("path", "conversions", "nulls")
WEIGHT_COLUMNS: tuple[str, ...] = ("model", "grain", "grain_value", "weight")

# Shares below this are floating-point noise (e.g. 1 - sum of shares that should be exactly 1).
_SHARE_EPSILON = 1e-12
# Separator used to build hashable path keys with vectorised string concatenation; a path key is every step
# followed by it (an engine that aggregates paths itself builds the same keys: see null_paths_from_keys).
PATH_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class AttributionConfig:
    """Parameters of touch selection and of every model.

    ``grain`` is the level the data-driven models (markov, shapley) are fitted at. ``shapley_max_channels``
    is the largest number of grain values for which Shapley values are computed by enumerating all
    coalitions; above it the exact closed form is used (see :func:`fit_shapley`).
    """

    lookback_days: float = 30.0
    probability_floor: float = 0.05
    repeat_seconds: float = 5.0
    half_life_days: float = 7.0
    position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4)
    grain: str = "channel"
    shapley_max_channels: int = 15
    models: tuple[str, ...] = MODELS

    def __post_init__(self) -> None:
        if not self.lookback_days > 0:
            raise ValueError(f"AttributionConfig.lookback_days must be > 0, got {self.lookback_days!r}")
        if not 0.0 <= self.probability_floor <= 1.0:
            raise ValueError(f"AttributionConfig.probability_floor must be in [0, 1], got {self.probability_floor!r}")
        if not self.repeat_seconds >= 0:
            raise ValueError(f"AttributionConfig.repeat_seconds must be >= 0, got {self.repeat_seconds!r}")
        if not self.half_life_days > 0:
            raise ValueError(f"AttributionConfig.half_life_days must be > 0, got {self.half_life_days!r}")
        weights = tuple(self.position_weights)
        if len(weights) != 3 or min(weights) < 0 or not math.isclose(sum(weights), 1.0):
            raise ValueError(
                "AttributionConfig.position_weights must be three non-negative numbers (first, middle, last) "
                f"summing to 1, got {self.position_weights!r}"
            )
        if self.grain not in GRAINS:
            raise ValueError(f"AttributionConfig.grain must be one of {GRAINS}, got {self.grain!r}")
        if self.shapley_max_channels < 1:
            raise ValueError(f"AttributionConfig.shapley_max_channels must be >= 1, got {self.shapley_max_channels!r}")
        unknown = [model for model in self.models if model not in MODELS]
        if unknown or len(set(self.models)) != len(self.models):
            raise ValueError(f"AttributionConfig.models must be distinct names from {MODELS}, got {self.models!r}")


DEFAULT_CONFIG = AttributionConfig()


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


# --------------------------------------------------------------------------------------------------------
# Model weights and confidence-weighted shares
# --------------------------------------------------------------------------------------------------------


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


def fitted_weights(touches: pd.DataFrame, weights: pd.Series, grain: str) -> np.ndarray:
    """Fitted weight of each touch's grain value (``weights`` indexed by grain value); unseen values get 0."""
    mapped = grain_values(touches, grain).map(weights)
    return mapped.fillna(0.0).to_numpy(dtype="float64")


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


# --------------------------------------------------------------------------------------------------------
# Paths for the data-driven models
# --------------------------------------------------------------------------------------------------------


def _aggregate_paths(keys: pd.Series, conversions: pd.Series, nulls: pd.Series) -> pd.DataFrame:
    """Group by the separator-joined path key and turn the unique keys back into lists."""
    summed = (
        pd.DataFrame({"key": keys, "conversions": conversions, "nulls": nulls})
        .groupby("key", sort=True)[["conversions", "nulls"]]
        .sum()
    )
    # One split per distinct path, not per conversion or click.
    paths = [key.split(PATH_SEPARATOR)[:-1] for key in summed.index]
    return pd.DataFrame(
        {
            "path": pd.Series(paths, dtype=object),
            "conversions": summed["conversions"].to_numpy(dtype="float64"),
            "nulls": summed["nulls"].to_numpy(dtype="float64"),
        }
    )


def _path_keys(frame: pd.DataFrame, group: str, grain: str) -> pd.Series:
    """Separator-joined grain values per group, in the frame's order (vectorised string concatenation)."""
    return (grain_values(frame, grain) + PATH_SEPARATOR).groupby(frame[group], sort=True).sum()


def conversion_paths(touches: pd.DataFrame, grain: str = "channel") -> pd.DataFrame:
    """Converting paths (path, conversions, nulls) from :func:`select_touches` output.

    Each conversion with touches counts 1 - U conversions (its probability that a touch is the converter's),
    so conversions whose touches are unlikely to be the converter's move the fitted weights less.
    """
    if len(touches) == 0:
        return empty_paths()
    ordered = touches.sort_values(["conversion_id", "touch_position"], kind="mergesort")
    keys = _path_keys(ordered, "conversion_id", grain)
    counts = 1.0 - unattributed_share(ordered).reindex(keys.index)
    return _aggregate_paths(keys, counts, pd.Series(0.0, index=keys.index))


def null_paths(
    clicks: pd.DataFrame,
    grain: str = "channel",
    identity_column: str = "identity_id",
    lookback_days: float = 30.0,
) -> pd.DataFrame:
    """Non-converting paths (path, conversions=0, nulls) from clicks of identities that did not convert.

    One path per identity: its clicks within ``lookback_days`` of its last click, in time order. The caller
    chooses the clicks (e.g. identities without a conversion in the fitting window, bots excluded).
    """
    require_columns(clicks, [identity_column, "clicked_at", grain], "clicks")
    if len(clicks) == 0:
        return empty_paths()
    last_click = clicks.groupby(identity_column)["clicked_at"].transform("max")
    recent = clicks.loc[clicks["clicked_at"] >= last_click - pd.Timedelta(days=lookback_days)]
    order = [identity_column, "clicked_at", *(["click_id"] if "click_id" in recent.columns else [])]
    ordered = recent.sort_values(order, kind="mergesort")
    keys = _path_keys(ordered, identity_column, grain)
    return _aggregate_paths(keys, pd.Series(0.0, index=keys.index), pd.Series(1.0, index=keys.index))


def null_paths_from_keys(keys: pd.Series, identities: pd.Series) -> pd.DataFrame:
    """Non-converting paths from path keys (each step followed by ``PATH_SEPARATOR``) and the number of
    identities with each: :func:`null_paths` for a warehouse that ordered and grouped the clicks itself."""
    if len(keys) == 0:
        return empty_paths()
    counts = pd.Series(identities.to_numpy(dtype="float64"), index=keys.index)
    return _aggregate_paths(keys.astype("str"), pd.Series(0.0, index=keys.index), counts)


def empty_paths() -> pd.DataFrame:
    """A paths frame with no rows."""
    return pd.DataFrame(
        {
            "path": pd.Series([], dtype=object),
            "conversions": pd.Series([], dtype="float64"),
            "nulls": pd.Series([], dtype="float64"),
        }
    )


def combine_paths(*paths: pd.DataFrame) -> pd.DataFrame:
    """Union of paths frames with identical paths added up."""
    frames = [frame for frame in paths if len(frame)]
    if not frames:
        return empty_paths()
    for frame in frames:
        require_columns(frame, PATH_COLUMNS, "paths")
    stacked = pd.concat([frame[list(PATH_COLUMNS)] for frame in frames], ignore_index=True)
    keys = stacked["path"].map(lambda path: "".join(f"{step}{PATH_SEPARATOR}" for step in path))
    return _aggregate_paths(keys, stacked["conversions"].astype("float64"), stacked["nulls"].astype("float64"))


def _valid_paths(paths: pd.DataFrame) -> pd.DataFrame:
    require_columns(paths, PATH_COLUMNS, "paths")
    lengths = paths["path"].map(len)
    counts = paths["conversions"].astype("float64") + paths["nulls"].astype("float64")
    return paths.loc[(lengths > 0) & (counts > 0)].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------
# Markov chain
# --------------------------------------------------------------------------------------------------------


def markov_transitions(paths: pd.DataFrame) -> pd.DataFrame:
    """First-order transitions (from_state, to_state, count, probability) over start -> path -> end.

    Each path contributes its conversions + nulls to every transition along it, its conversions to
    last -> ``(conversion)`` and its nulls to last -> ``(null)``.
    """
    valid = _valid_paths(paths)
    if len(valid) == 0:
        return pd.DataFrame(
            {
                "from_state": pd.Series([], dtype="str"),
                "to_state": pd.Series([], dtype="str"),
                "count": pd.Series([], dtype="float64"),
                "probability": pd.Series([], dtype="float64"),
            }
        )
    total = valid["conversions"].astype("float64") + valid["nulls"].astype("float64")
    steps = valid["path"].explode()
    path_id = steps.index.to_numpy()
    step = steps.astype("str").to_numpy()
    is_last = np.r_[path_id[1:] != path_id[:-1], True]
    is_first = np.r_[True, path_id[1:] != path_id[:-1]]
    following = np.r_[step[1:], [""]]
    parts = [
        pd.DataFrame({"from_state": START, "to_state": step[is_first], "count": total.to_numpy()}),
        pd.DataFrame(
            {
                "from_state": step[~is_last],
                "to_state": following[~is_last],
                "count": total.to_numpy()[path_id[~is_last]],
            }
        ),
        pd.DataFrame({"from_state": step[is_last], "to_state": CONVERSION, "count": valid["conversions"]}),
        pd.DataFrame({"from_state": step[is_last], "to_state": NULL, "count": valid["nulls"]}),
    ]
    edges = pd.concat(parts, ignore_index=True)
    edges = edges.loc[edges["count"] > 0]
    counts = edges.groupby(["from_state", "to_state"], as_index=False, sort=True)["count"].sum()
    counts["count"] = counts["count"].astype("float64")
    counts["probability"] = counts["count"] / counts.groupby("from_state")["count"].transform("sum")
    return counts


def fit_markov(paths: pd.DataFrame) -> pd.DataFrame:
    """Removal effects of a first-order Markov chain, solved analytically (absorbing-chain linear algebra).

    Transient states are ``(start)`` and the channels; ``(conversion)`` and ``(null)`` absorb. With
    A = I - Q and fundamental matrix N = A^-1, x = N r is the probability of reaching ``(conversion)`` from
    each state. Removing channel c sends every path that reaches c to ``(null)``, so

        P(conversion | c removed) = x_start - h_c x_c,   h_c = N[start, c] / N[c, c]

    (h_c: probability of ever reaching c), and removal_effect_c = h_c x_c / x_start. This equals solving the
    chain once per removed channel, with one matrix inversion for all of them. Returns (channel,
    removal_effect, attributed_conversions, weight) where attributed conversions = total conversions x
    RE_c / sum RE and weight = RE_c / sum RE. Dense linear algebra: O(n^2) memory and O(n^3) time in the
    number of grain values (a few thousand links take seconds).
    """
    transitions = markov_transitions(paths)
    channels = sorted(set(transitions["from_state"]) - {START})
    if not channels:
        return _fitted_frame([], np.zeros(0), "removal_effect", total=0.0, with_conversions=True)
    states = [START, *channels]
    index = {state: position for position, state in enumerate(states)}
    size = len(states)
    transient = transitions.loc[transitions["to_state"].isin(index)]
    q = np.zeros((size, size))
    np.add.at(
        q,
        (transient["from_state"].map(index).to_numpy(), transient["to_state"].map(index).to_numpy()),
        transient["probability"].to_numpy(),
    )
    converting = transitions.loc[transitions["to_state"] == CONVERSION]
    r = np.zeros(size)
    np.add.at(r, converting["from_state"].map(index).to_numpy(), converting["probability"].to_numpy())

    fundamental = np.linalg.inv(np.eye(size) - q)
    absorb = fundamental @ r
    start = index[START]
    if absorb[start] <= 0:
        effects = np.zeros(len(channels))
    else:
        reach = fundamental[start, 1:] / np.diag(fundamental)[1:]
        effects = np.clip(reach * absorb[1:] / absorb[start], 0.0, 1.0)
    total = float(_valid_paths(paths)["conversions"].sum())
    return _fitted_frame(channels, effects, "removal_effect", total=total, with_conversions=True)


def _fitted_frame(
    channels: list[str], values: np.ndarray, value_column: str, total: float, with_conversions: bool
) -> pd.DataFrame:
    values = np.asarray(values, dtype="float64")
    value_sum = values.sum()
    weight = values / value_sum if value_sum > 0 else np.zeros_like(values)
    frame = pd.DataFrame({"channel": pd.Series(channels, dtype="str"), value_column: values})
    if with_conversions:
        frame["attributed_conversions"] = total * weight
    frame["weight"] = weight
    return frame


# --------------------------------------------------------------------------------------------------------
# Shapley
# --------------------------------------------------------------------------------------------------------


def _shapley_values(sets: list[frozenset], values: np.ndarray, max_channels: int) -> pd.DataFrame:
    """Shapley values of the game v(S) = sum of ``values`` of the ``sets`` contained in S.

    Up to ``max_channels`` players: enumerate all 2^n coalitions (subset-sum transform of v, then the
    Shapley formula). Above: the closed form phi_i = sum over sets T containing i of value_T / |T| — each
    set's value is a Harsanyi dividend of this game and is split equally among its members. The closed form
    is exact (not an approximation), linear in the number of sets; the enumeration is kept as the literal
    definition and tests check that both agree.
    """
    values = np.asarray(values, dtype="float64")
    kept = [(members, value) for members, value in zip(sets, values, strict=True) if members and value]
    channels = sorted(set().union(*(members for members, _ in kept))) if kept else []
    n = len(channels)
    if n == 0:
        return _fitted_frame([], np.zeros(0), "shapley_value", total=0.0, with_conversions=False)
    bit = {channel: 1 << position for position, channel in enumerate(channels)}
    if n <= max_channels:
        worth = np.zeros(1 << n)
        np.add.at(
            worth,
            np.array([sum(bit[c] for c in members) for members, _ in kept]),
            np.array([value for _, value in kept]),
        )
        masks = np.arange(1 << n)
        for position in range(n):  # subset-sum (zeta) transform: worth[S] = sum over T subset of S
            has = (masks >> position) & 1 == 1
            worth[has] += worth[masks[has] ^ (1 << position)]
        size = np.array([int(m).bit_count() for m in masks])
        coefficient = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])
        shapley = np.zeros(n)
        for position in range(n):
            without = masks[(masks >> position) & 1 == 0]
            marginal = worth[without | (1 << position)] - worth[without]
            shapley[position] = (coefficient[size[without]] * marginal).sum()
    else:
        shapley = np.zeros(n)
        position_of = {channel: position for position, channel in enumerate(channels)}
        for members, value in kept:  # one iteration per distinct channel set
            for channel in members:
                shapley[position_of[channel]] += value / len(members)
    return _fitted_frame(channels, shapley, "shapley_value", total=0.0, with_conversions=False)


def fit_shapley(paths: pd.DataFrame, max_channels: int = 15) -> pd.DataFrame:
    """Exact Shapley values over channel sets, worth v(S) = conversions whose channel set is a subset of S.

    Only ``conversions`` count (``nulls`` are ignored). Returns (channel, shapley_value, weight) with
    weight = value / sum of values; the values add up to the total conversions. See
    :func:`_shapley_values` for the enumeration / closed-form switch at ``max_channels``.
    """
    valid = _valid_paths(paths)
    by_set: dict[frozenset, float] = {}
    for path, conversions in zip(valid["path"], valid["conversions"], strict=True):  # one per distinct path
        members = frozenset(str(step) for step in path)
        by_set[members] = by_set.get(members, 0.0) + float(conversions)
    return _shapley_values(list(by_set), np.array(list(by_set.values())), max_channels)


def shapley_from_rates(rates: Mapping[frozenset, float], max_channels: int = 15) -> pd.DataFrame:
    """Shapley values when each exact channel set has a conversion rate; v(S) = sum of the rates of the
    sets contained in S (the published worked example). Returns (channel, shapley_value, weight)."""
    sets = [frozenset(members) for members in rates]
    return _shapley_values(sets, np.array(list(rates.values()), dtype="float64"), max_channels)


# --------------------------------------------------------------------------------------------------------
# Fitting the data-driven weights
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataDrivenFit:
    """Fitted Markov and Shapley models at one grain, for reports and for :func:`attribute`."""

    grain: str
    transitions: pd.DataFrame
    markov: pd.DataFrame
    shapley: pd.DataFrame

    @property
    def channel_weights(self) -> pd.DataFrame:
        """(model, grain, grain_value, weight): the ``channel_weights`` argument of :func:`attribute`."""
        parts = [
            pd.DataFrame(
                {
                    "model": model,
                    "grain": self.grain,
                    "grain_value": fitted["channel"].astype("str"),
                    "weight": fitted["weight"].astype("float64"),
                }
            )
            for model, fitted in (("markov", self.markov), ("shapley", self.shapley))
        ]
        return pd.concat(parts, ignore_index=True).astype(
            {"model": "str", "grain": "str", "grain_value": "str", "weight": "float64"}
        )


def fit_data_driven(paths: pd.DataFrame, config: AttributionConfig = DEFAULT_CONFIG) -> DataDrivenFit:
    """Fit Markov (converting and non-converting paths) and Shapley (converting paths) at ``config.grain``."""
    return DataDrivenFit(
        grain=config.grain,
        transitions=markov_transitions(paths),
        markov=fit_markov(paths),
        shapley=fit_shapley(paths, config.shapley_max_channels),
    )


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
        result[model] = (
            pd.Series(rows["weight"].astype("float64").to_numpy(), index=rows["grain_value"].astype("str").to_numpy())
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

    ``channel_weights`` (model, grain_value, weight[, grain]) are the fitted Markov / Shapley weights, e.g.
    ``fit_data_driven(paths, config).channel_weights`` over a long window. When None they are fitted on
    the converting paths of ``candidates`` alone (no non-converting paths, so Markov has no null
    transitions) — fine for one-off analysis, but results then depend on which conversions are passed.
    A conversion whose touches all have fitted weight 0 (grain values unseen when fitting, or with zero
    effect) is split with equal weights.
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
                model_weight = fitted_weights(touches, weights[model], config.grain)
                share = confidence_shares(touches, model_weight, True, touch_unattributed)
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
