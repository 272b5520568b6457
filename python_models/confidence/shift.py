"""How far the labelled conversions are from the rest: the evidence that the model's calibration transfers.

The match model learns and calibrates on conversions that carry a direct click id. Those are mostly same-browser
conversions; the ones without a click id are more often cross-device, in-app hand-offs or matched only through an
IP or a fingerprint. Where the two groups differ, calibration measured on labels is extrapolated to the rest.

Two statistics, per feature of the best candidate of each conversion (the pair its pick most likely comes from):

* the standardised mean difference (SMD) between labelled and unlabelled conversions, ``(mean_u - mean_l) /
  sqrt((var_u + var_l) / 2)``: a covariate-balance measure from the causal-inference literature where
  ``|SMD| > 0.25`` is the usual mark of groups too different to compare without adjustment;
* the unsupported share: unlabelled conversions whose best candidate's signal pattern (which of the signals it
  shares) occurs among fewer than ``min_support`` labelled conversions. Their probabilities rest on
  extrapolation whatever the SMD says.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from python_models.confidence.features import _flag, _number, labelled_pairs

# The signals whose combination makes a conversion's pattern (is it one the labels show?).
PATTERN_SIGNALS: tuple[str, ...] = (
    "sig_cookie",
    "sig_session",
    "sig_user_id",
    "sig_email",
    "sig_identity",
    "sig_fingerprint",
    "sig_ip_ua",
    "sig_ip",
)
# Features compared, with how each is read from the candidate pair.
SHIFT_FLAGS: tuple[str, ...] = (*PATTERN_SIGNALS, "ua_family_match", "inapp_to_main_switch")
SMD_LIMIT = 0.25
UNSUPPORTED_LIMIT = 0.10


def _best_pairs(candidates: pd.DataFrame, scores: np.ndarray | None) -> pd.DataFrame:
    """One pair per conversion: the highest score (or the most recent click without scores); ties by position."""
    order = pd.DataFrame(
        {
            "conversion_id": candidates["conversion_id"].to_numpy(),
            "score": scores if scores is not None else -_number(candidates, "gap_seconds", 0.0, 0.0),
            "row": np.arange(len(candidates)),
        }
    ).sort_values(["conversion_id", "score", "row"], ascending=[True, False, True], kind="stable")
    rows = order.drop_duplicates("conversion_id")["row"].to_numpy()
    return candidates.iloc[np.sort(rows)]


def _features(pairs: pd.DataFrame) -> pd.DataFrame:
    out = {f: _flag(pairs, f).astype(float) for f in SHIFT_FLAGS if f in pairs.columns}
    out["log_gap_hours"] = np.log1p(_number(pairs, "gap_seconds", 0.0, 0.0) / 3600.0)
    out["log_fingerprint_popularity"] = np.log(_number(pairs, "fingerprint_popularity", 1.0, 1.0))
    out["log_ip_popularity"] = np.log(_number(pairs, "ip_popularity", 1.0, 1.0))
    return pd.DataFrame(out, index=pairs.index)


def standardised_mean_difference(labelled: np.ndarray, unlabelled: np.ndarray) -> float:
    """(mean_u - mean_l) / pooled sd; 0 when both groups are constant and equal, +-inf when constant and apart."""
    if not len(labelled) or not len(unlabelled):
        return float("nan")
    diff = float(np.mean(unlabelled) - np.mean(labelled))
    sd = float(np.sqrt((np.var(unlabelled) + np.var(labelled)) / 2))
    if sd == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return diff / sd


def label_shift(
    candidates: pd.DataFrame, scores: np.ndarray | None = None, min_support: int = 20
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per feature: mean among labelled and unlabelled conversions' best pairs and the SMD; plus a summary.

    The direct click itself is left out of a labelled conversion's pairs (it is what makes it labelled, and the
    question is how the *other* evidence compares). Summary: conversions of each kind, the largest |SMD|, the
    unsupported share of unlabelled conversions and ``extrapolating`` (1.0 when the largest |SMD| exceeds
    ``SMD_LIMIT`` or the unsupported share exceeds ``UNSUPPORTED_LIMIT``).
    """
    labelled, _ = labelled_pairs(candidates)
    keep = ~_flag(candidates, "sig_direct_click")
    pairs = candidates.loc[keep]
    is_labelled = pd.Series(labelled[keep], index=pairs.index)
    best = _best_pairs(pairs, None if scores is None else np.asarray(scores, dtype=float)[keep])
    lab = is_labelled.loc[best.index].to_numpy()
    feats = _features(best)
    rows = []
    for name in feats.columns:
        values = feats[name].to_numpy()
        rows.append(
            {
                "feature": name,
                "labelled_mean": float(values[lab].mean()) if lab.any() else float("nan"),
                "unlabelled_mean": float(values[~lab].mean()) if (~lab).any() else float("nan"),
                "smd": standardised_mean_difference(values[lab], values[~lab]),
            }
        )
    table = pd.DataFrame(rows, columns=["feature", "labelled_mean", "unlabelled_mean", "smd"])
    pattern = np.zeros(len(best), dtype=np.int64)
    for bit, name in enumerate(s for s in PATTERN_SIGNALS if s in best.columns):
        pattern |= _flag(best, name).astype(np.int64) << bit
    support = pd.Series(pattern[lab]).value_counts()
    unl_support = pd.Series(pattern[~lab]).map(support).fillna(0).to_numpy()
    unsupported = float((unl_support < min_support).mean()) if (~lab).any() else 0.0
    finite = table["smd"].abs().replace(np.inf, np.nan).dropna()
    max_smd = float(table["smd"].abs().max()) if len(table) and table["smd"].notna().any() else 0.0
    summary = {
        "labelled_conversions": float(lab.sum()),
        "unlabelled_conversions": float((~lab).sum()),
        "max_abs_smd": max_smd,
        "mean_abs_smd": float(finite.mean()) if len(finite) else 0.0,
        "unsupported_share": unsupported,
        "extrapolating": float(max_smd > SMD_LIMIT or unsupported > UNSUPPORTED_LIMIT),
    }
    return table, summary
