"""Per-conversion allocation weights whose totals reconcile with a fitted model's totals.

A fitted model (Markov, Shapley) gives each grain value a total: weight x the conversions it was fitted on. A
conversion is split over its *distinct* grain values in proportion to an allocation weight a_c, so its
attributed share (1 - U) is kept whatever the weights. Summed over conversions, grain value c receives

    T_c(a) = sum over conversions k containing c of m_k a_c / sum_{c' in k} a_{c'}     (m_k = 1 - U_k)

Shapley with v(S) = conversions whose grain set is inside S: every grain set's conversions are a Harsanyi
dividend split equally among its members, so a_c = 1 (an equal split over distinct values) gives T_c = phi_c
exactly. Markov has no such closed form; :func:`reconciling_weights` finds a by iterative proportional fitting
(IPF) of the conversion x grain incidence: start from the removal effects, rescale each column to its fitted
total, let every row re-normalise to its mass, repeat. The limit does not depend on the starting weights (every
a gives a matrix of the same row-times-column family; the one matching the margins is unique).

Not every set of totals can be reached: a conversion with a single grain value can only credit that value, so
when the conversions seen on value c alone exceed c's fitted total (ChannelAttribution's example: 5,742
conversions on `alpha` alone, Markov total 5,345) no split of conversions reaches it. IPF then converges to the
closest reachable totals (those values at their forced minimum, every other total scaled by one common
factor), and :func:`reconciled_totals` reports what was reached so callers can show the gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from python_models.attribution.paths import _valid_paths
from python_models.attribution.rules import share_in_group


def grain_sets(paths: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Converting paths as distinct grain-value sets: (mass per set, one row per set x member).

    Returns ``mass`` (conversions per set, indexed 0..n-1) and ``members`` (set, grain_value). Path order and
    repeats do not matter for an allocation over distinct values, so paths with the same set are merged.
    """
    valid = _valid_paths(paths)
    converting = valid.loc[valid["conversions"] > 0]
    keys = converting["path"].map(lambda path: tuple(sorted({str(step) for step in path})))
    mass = converting.groupby(keys, sort=True)["conversions"].sum()
    members = pd.DataFrame(
        [(number, value) for number, key in enumerate(mass.index) for value in key],
        columns=["set", "grain_value"],
    ).astype({"set": "int64", "grain_value": "str"})
    return pd.Series(mass.to_numpy(dtype="float64")), members


def reconciled_totals(paths: pd.DataFrame, allocation: pd.Series) -> pd.Series:
    """T_c: conversions each grain value receives when every converting path is split over its distinct values
    in proportion to ``allocation`` (indexed by grain value; missing or all-zero sets split equally)."""
    mass, members = grain_sets(paths)
    if len(members) == 0:
        return pd.Series(dtype="float64")
    codes, values = pd.factorize(members["grain_value"], sort=True)
    weights = pd.Series(allocation, dtype="float64").reindex(values).fillna(0.0).to_numpy()
    totals = _column_sums(members["set"].to_numpy(), codes, mass.to_numpy(), weights, len(values))
    return pd.Series(totals, index=pd.Index(values, dtype="str"))


def _column_sums(rows: np.ndarray, columns: np.ndarray, mass: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    row_total = np.bincount(rows, weights=weights[columns], minlength=len(mass))
    row_size = np.bincount(rows, minlength=len(mass))
    # A set whose members all weigh 0 is split equally, as attribute() does.
    share = share_in_group(weights[columns], row_total[rows], row_size[rows])
    return np.bincount(columns, weights=mass[rows] * share, minlength=n)


def reconciling_weights(
    paths: pd.DataFrame,
    totals: pd.Series,
    start: pd.Series | None = None,
    max_iterations: int = 20_000,
    tolerance: float = 1e-9,
) -> pd.Series:
    """Allocation weights a (indexed by grain value, summing to 1) with T_c(a) = ``totals`` when reachable.

    ``totals`` is each grain value's fitted total on the converting paths of ``paths`` (they should add up
    to those paths' conversions); ``start`` the initial weights (e.g. the removal effects; default equal).
    Stops when every total is within ``tolerance`` (relative) of its target or the totals stop moving (the
    target is unreachable: the result is then the closest reachable allocation, see the module docstring).
    """
    mass, members = grain_sets(paths)
    targets = pd.Series(totals, dtype="float64")
    if len(members) == 0:
        return pd.Series(dtype="float64")
    codes, values = pd.factorize(members["grain_value"], sort=True)
    missing = sorted(set(values) - set(targets.index.astype("str")))
    if missing:
        raise ValueError(f"reconciling_weights: totals has no value for grain values on the paths, e.g. {missing[:5]}")
    target = targets.set_axis(targets.index.astype("str")).reindex(values).to_numpy()
    if (target < 0).any() or not np.isfinite(target).all():
        raise ValueError("reconciling_weights: totals must be finite and non-negative")
    initial = np.ones(len(values)) if start is None else pd.Series(start, dtype="float64").reindex(values).to_numpy()
    weights = np.where(np.isfinite(initial) & (initial > 0), initial, 0.0)
    # A value with a positive target must be able to grow; one with a zero target never gets weight.
    weights = np.where(target > 0, np.maximum(weights, 1e-12), 0.0)
    rows, mass_values = members["set"].to_numpy(), mass.to_numpy()
    previous = None
    for _ in range(max_iterations):
        sums = _column_sums(rows, codes, mass_values, weights, len(values))
        scale = np.maximum(target, 1e-300)
        if np.max(np.abs(sums - target) / scale) < tolerance:
            break
        if previous is not None and np.max(np.abs(sums - previous) / scale) < tolerance * 1e-3:
            break
        previous = sums
        with np.errstate(divide="ignore", invalid="ignore"):
            weights = np.where(sums > 0, weights * target / sums, weights)
        weights = weights / weights.max()
    return pd.Series(weights / weights.sum(), index=pd.Index(values, dtype="str"))
