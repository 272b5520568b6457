"""Markov-chain attribution: transition probabilities and removal effects per grain value."""

from __future__ import annotations

import numpy as np
import pandas as pd

from python_models.attribution.allocation import reconciling_weights
from python_models.attribution.config import CONVERSION, NULL, START
from python_models.attribution.paths import _valid_paths

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
    RE_c / sum RE and weight = RE_c / sum RE, plus allocation_weight: the per-conversion split whose totals
    reproduce attributed_conversions (:func:`reconciling_weights`, started from the removal effects). Dense
    linear algebra: O(n^2) memory and O(n^3) time in the
    number of grain values (a few thousand links take seconds).
    """
    transitions = markov_transitions(paths)
    channels = sorted(set(transitions["from_state"]) - {START})
    if not channels:
        return _fitted_frame([], np.zeros(0), "removal_effect", total=0.0, with_conversions=True).assign(
            allocation_weight=pd.Series([], dtype="float64")
        )
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
    fitted = _fitted_frame(channels, effects, "removal_effect", total=total, with_conversions=True)
    allocation = reconciling_weights(
        paths,
        fitted.set_index("channel")["attributed_conversions"],
        start=fitted.set_index("channel")["removal_effect"],
    )
    fitted["allocation_weight"] = fitted["channel"].map(allocation).fillna(0.0).astype("float64")
    return fitted


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
