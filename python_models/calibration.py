"""Calibration diagnostics: reliability bins and expected calibration error."""

from __future__ import annotations

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------------------------
# Calibration diagnostics (shared with the evaluator)
# --------------------------------------------------------------------------------------------------------------


def calibration_bins(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width reliability bins over [0, 1]; empty bins are kept with n = 0 and NaN means."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels, dtype=float)
    if p.shape != y.shape:
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} differ in shape")
    if len(p) and (np.nanmin(p) < 0 or np.nanmax(p) > 1 or np.isnan(p).any()):
        raise ValueError("probabilities must be in [0, 1] without NaN")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.minimum((p * n_bins).astype(int), n_bins - 1)
    n = np.bincount(index, minlength=n_bins)
    sum_p = np.bincount(index, weights=p, minlength=n_bins)
    sum_y = np.bincount(index, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(n > 0, sum_p / n, np.nan)
        rate = np.where(n > 0, sum_y / n, np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "n": n.astype("int64"),
            "mean_predicted": mean_p,
            "observed_rate": rate,
        }
    )


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Sum over bins of (share of pairs) * |mean predicted - observed rate|; 0 for empty input."""
    bins = calibration_bins(probabilities, labels, n_bins)
    total = bins["n"].sum()
    if total == 0:
        return 0.0
    used = bins[bins["n"] > 0]
    return float((used["n"] / total * (used["mean_predicted"] - used["observed_rate"]).abs()).sum())
