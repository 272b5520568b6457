"""P(the converter made no click we cannot see after a touch), from labelled conversions and placebo times."""

from __future__ import annotations

import numpy as np
import pandas as pd

from python_models.confidence.calibrators import _pav
from python_models.confidence.features import _flag, _number
from python_models.confidence.model import MatchModel

# --------------------------------------------------------------------------------------------------------------
# Unseen later clicks: P(the converter made no click we cannot see after a touch)
# --------------------------------------------------------------------------------------------------------------

# Hour edges of the touch-age bins of the unseen-later-click estimate (log-spaced: conversions follow clicks fast).
SURVIVAL_EDGES_HOURS: tuple[float, ...] = (0.0, 1 / 6, 1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 72.0, 120.0, 240.0)
# Placebo conversion times per labelled conversion (an even grid over the first half of the lookback).
SURVIVAL_PLACEBOS = 48
# Labelled conversions the estimate needs. The label model has 200 or more (min_labelled_conversions); with
# 50-199 the priors' model gets the estimate too (without it, old carried direct clicks and cookies were
# stated ~0.7 and right ~0.13 on the `transfer` family's low-label worlds; BENCHMARKS.md, issue 18).
SURVIVAL_MIN_CONVERSIONS = 50
# Standard deviations of the Poisson score bound on each bin's direct-click count (stale_share_bound). With
# STATED_STALE_WEIGHT it was chosen on the `transfer` family's tune worlds (3,000 persons, seeds 7 and 11) and the
# 20,000-person demo world (seed 42; BENCHMARKS.md, issue 18) as the pair with the smallest worst ECE of
# confidence_score over t_default, t_more_labels, t_busy and the demo world whose precision stays >= 0.90 there:
# 0.083 / 0.079 / 0.085 (seed 7 / 11 / demo) at 1 and 0.5; 0.092 / 0.090 / 0.088 at 1.645 and 0.5; 0.079 / 0.058 /
# 0.104 at 1.645 and 0.25 (over-confident on the demo world); z 0.5 or 1 with 0.25, and 0.5 with 0.5, attributed
# below 0.90 precision on seed 11.
SURVIVAL_BOUND_Z = 1.0
# Weight of the estimated P(stale | age) in the *stated* last-touch confidence (the pick uses all of it). The
# stale share is the largest the data allow (stale_share_bound) and the stated factor stays too pessimistic at mid
# ages: direct clicks 6-72 h old were right 95-98 % of the time on the `transfer` family's learned worlds (seed 7)
# where the factor said 53-70 %, while on the demo world old direct clicks are more often truly overtaken. See
# SURVIVAL_BOUND_Z for the choice; all of it stated 0.092 / 0.058 (t_default, seed 7 / 11).
STATED_STALE_WEIGHT = 0.5


def stale_share_bound(n_direct: np.ndarray, n_placebo: np.ndarray, z: float = SURVIVAL_BOUND_Z) -> float:
    """The share of stale direct clicks in the binned mixture (1 - pi) f_led + pi f_stale: the smallest density
    ratio f_direct / f_stale, each bin's direct-click count taken at the upper end of its Poisson score interval
    (n + z^2 / 2 + z * sqrt(n + z^2 / 4)).

    Every bin caps pi at its ratio (the led component cannot be negative), so the smallest ratio is the largest pi
    the data allow. Taken over raw counts, the smallest ratio is decided by whichever bin is low by chance, so the
    estimate used to keep only bins of 15+ direct clicks, and then the oldest bins, where led clicks are still
    common, set it too high. Here every bin with placebo ages takes part (few direct clicks where placebo ages are
    common is evidence that few are stale), each through what its count allows. On the `transfer` family
    (3,000 persons, seed 7) this gives 0.15 / 0.13 / 0.16 on t_default / t_more_labels / h_cgnat, where the
    labelled conversions' direct clicks were not the true last click 0.19 / 0.17 / 0.16 of the time and the raw
    ratio over bins of 15+ said 0.27 / 0.26 / 0.81. It is no bound on the truth (the placebo ages only stand in for
    the ages of stale clicks): on seed 11, 0.09 / 0.08 / 0.19 against 0.22 / 0.21 / 0.25. 1 without placebo ages
    or direct clicks.
    """
    n = np.asarray(n_direct, dtype=float)
    placebo = np.asarray(n_placebo, dtype=float)
    if n.shape != placebo.shape or (n < 0).any() or (placebo < 0).any():
        raise ValueError(f"bin counts must be non-negative and of one length, got {list(n)} and {list(placebo)}")
    if z < 0:
        raise ValueError(f"z must be >= 0, got {z!r}")
    seen = placebo > 0
    if n.sum() == 0 or not seen.any():
        return 1.0
    upper = n + z * z / 2.0 + z * np.sqrt(n + z * z / 4.0)
    f_stale = placebo / placebo.sum()
    return float(min(1.0, np.min(upper[seen] / n.sum() / f_stale[seen])))


def fit_unseen_later_click(
    candidates: pd.DataFrame, labelled: np.ndarray, label: np.ndarray
) -> tuple[tuple[float, ...], tuple[float, ...], dict[str, float]]:
    """P(no later click by the converter that no candidate shows | hours since a touch), from labelled conversions.

    A direct click id is the last click *of the browser jar that converted*; the converter may have clicked again
    in another jar (an in-app webview, another device) that shares nothing with the conversion, and that later
    click is the true last touch. The direct click's age then looks like the age of a jar's last click at a
    time unrelated to its clicks. So the direct-click ages of labelled conversions are a mixture

        f_direct(age) = (1 - pi) * f_led(age) + pi * f_stale(age)

    where f_led is the lag of conversions led by the click (short) and f_stale is the backward recurrence time of
    the same jars at a placebo time: for placebo times on an even grid before each conversion, the age of the
    jar's latest click (the direct click's resolved identity) before the placebo time. Both are compared on ages
    below half the lookback, where placebo ages are fully visible. pi is the mixture-proportion estimate (the
    smallest density ratio f_direct / f_stale, each bin's count at the upper end of its Poisson interval:
    :func:`stale_share_bound`), and P(stale | age) = pi * f_stale / f_direct, made non-decreasing in age. Returns
    knots (bin-centre hours, 1 - P(stale)) and fit statistics; empty knots (no adjustment) when labels are too few.
    """
    stats: dict[str, float] = {"survival_used": 0.0}
    direct = labelled & _flag(candidates, "sig_direct_click")
    jar = labelled & label
    gap = _number(candidates, "gap_seconds", 0.0, 0.0) / 3600.0
    conv = candidates["conversion_id"].to_numpy()
    n_conversions = int(pd.unique(conv[direct]).size)
    stats["survival_labelled_conversions"] = float(n_conversions)
    if n_conversions < SURVIVAL_MIN_CONVERSIONS:
        return (), (), stats
    window = float(np.max(gap[labelled])) / 2.0 if labelled.any() else 0.0
    edges = np.array([e for e in SURVIVAL_EDGES_HOURS if e < window] + [window])
    if len(edges) < 3:
        return (), (), stats
    # Placebo ages: for each labelled conversion and placebo time T hours before it, the age at T of the jar's
    # latest click at or before T (clicks' gaps are hours before the conversion).
    ids = pd.unique(conv[direct])
    offsets = window * (np.arange(SURVIVAL_PLACEBOS) + 0.5) / SURVIVAL_PLACEBOS
    placebo = pd.DataFrame(
        {"conversion_id": np.repeat(ids, len(offsets)), "t": np.tile(offsets, len(ids))}
    ).sort_values("t", kind="mergesort")
    clicks = pd.DataFrame({"conversion_id": conv[jar], "g": gap[jar]}).sort_values("g", kind="mergesort")
    joined = pd.merge_asof(placebo, clicks, left_on="t", right_on="g", by="conversion_id", direction="forward")
    placebo_age = (joined["g"] - joined["t"]).to_numpy()
    placebo_age = placebo_age[np.isfinite(placebo_age) & (placebo_age < window)]
    direct_age = gap[direct]
    direct_age = direct_age[direct_age < window]
    n_direct = np.histogram(direct_age, edges)[0].astype(float)
    n_placebo = np.histogram(placebo_age, edges)[0].astype(float)
    if n_direct.sum() == 0 or n_placebo.sum() == 0:
        return (), (), stats
    f_direct, f_stale = n_direct / n_direct.sum(), n_placebo / n_placebo.sum()
    pi = stale_share_bound(n_direct, n_placebo)
    with np.errstate(divide="ignore", invalid="ignore"):
        stale = np.where(n_direct > 0, pi * f_stale / f_direct, 1.0)
    stale = np.clip(_pav(np.clip(stale, 0.0, 1.0), n_direct + 1.0, increasing=True), 0.0, 1.0)
    centres = np.sqrt(np.maximum(edges[:-1], 1e-3) * edges[1:])
    stats.update({"survival_used": 1.0, "survival_stale_share": pi, "survival_window_hours": window})
    return tuple(centres.tolist()), tuple((1.0 - stale).tolist()), stats


def no_unseen_later_click(model: MatchModel, age_hours: np.ndarray) -> np.ndarray:
    """P(the converter made no unseen click after a touch of this age); 1 when the model has no estimate."""
    age = np.asarray(age_hours, dtype=float)
    if not model.survival_hours:
        return np.ones_like(age)
    x = np.log1p(np.asarray(model.survival_hours))
    return np.interp(np.log1p(np.maximum(age, 0.0)), x, np.asarray(model.survival))


def stated_no_unseen_later_click(
    model: MatchModel, age_hours: np.ndarray, stale_weight: float = STATED_STALE_WEIGHT
) -> np.ndarray:
    """The factor in the stated confidence: 1 - stale_weight * P(unseen later click | age) (see
    STATED_STALE_WEIGHT); at most 1 - stale_weight below 1, so an unstable estimate cannot state a pick at ~0."""
    if not 0.0 <= stale_weight <= 1.0:
        raise ValueError(f"stale_weight must be in [0, 1], got {stale_weight!r}")
    return 1.0 - stale_weight * (1.0 - no_unseen_later_click(model, age_hours))
