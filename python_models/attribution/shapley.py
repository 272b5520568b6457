"""Shapley-value attribution over the coalitions of grain values seen on paths."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from python_models.attribution.markov import _fitted_frame
from python_models.attribution.paths import _valid_paths

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


def _with_equal_allocation(fitted: pd.DataFrame) -> pd.DataFrame:
    # Each coalition's dividend is split equally among its members, so splitting every conversion equally
    # over its distinct grain values adds up to the Shapley values exactly (tests prove it on enumeration).
    return fitted.assign(allocation_weight=pd.Series(1.0, index=fitted.index, dtype="float64"))


def fit_shapley(paths: pd.DataFrame, max_channels: int = 15) -> pd.DataFrame:
    """Exact Shapley values over channel sets, worth v(S) = conversions whose channel set is a subset of S.

    Only ``conversions`` count (``nulls`` are ignored). Returns (channel, shapley_value, weight,
    allocation_weight) with weight = value / sum of values; the values add up to the total conversions.
    allocation_weight is 1: a conversion split equally over its distinct grain values reproduces the values. See
    :func:`_shapley_values` for the enumeration / closed-form switch at ``max_channels``.
    """
    valid = _valid_paths(paths)
    by_set: dict[frozenset, float] = {}
    for path, conversions in zip(valid["path"], valid["conversions"], strict=True):  # one per distinct path
        members = frozenset(str(step) for step in path)
        by_set[members] = by_set.get(members, 0.0) + float(conversions)
    return _with_equal_allocation(_shapley_values(list(by_set), np.array(list(by_set.values())), max_channels))


def shapley_from_rates(rates: Mapping[frozenset, float], max_channels: int = 15) -> pd.DataFrame:
    """Shapley values when each exact channel set has a conversion rate; v(S) = sum of the rates of the
    sets contained in S (the published worked example). Returns (channel, shapley_value, weight)."""
    sets = [frozenset(members) for members in rates]
    return _shapley_values(sets, np.array(list(rates.values()), dtype="float64"), max_channels)
