"""The original app's fixed-confidence attribution rule, implemented once and reused by the evaluator.

The rule: among a conversion's candidate clicks (non-bot, inside the lookback window, sharing at least one
signal with the conversion), pick the click whose strongest shared signal has the highest FIXED confidence;
ties go to the latest click (then to the smallest ``click_id`` so the pick is deterministic). The pick's
confidence is that fixed number. It reads the ``sig_*`` booleans only, never ``match_probability``.

As an attribution model (``rule_based`` in :mod:`python_models.attribution`) the picked click gets share
``confidence`` and the conversion keeps ``1 - confidence`` unattributed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

# Ordered from strongest to weakest: the order is the tie-break for `strongest_signal` and the order of
# `matched_signals`.
SIGNAL_CONFIDENCE: dict[str, float] = {
    "direct_click": 0.95,
    "user_id": 0.90,
    "session": 0.85,
    "cookie": 0.80,
    "fingerprint": 0.75,
    "email": 0.70,
    "ip_ua": 0.65,
    "ip": 0.50,
}
SIGNAL_NAMES: tuple[str, ...] = tuple(SIGNAL_CONFIDENCE)
SIGNAL_COLUMNS: tuple[str, ...] = tuple(f"sig_{name}" for name in SIGNAL_NAMES)

PICK_COLUMNS: tuple[str, ...] = ("conversion_id", "click_id", "link_id", "confidence", "strongest_signal")


def require_columns(frame: pd.DataFrame, columns: Iterable[str], table: str) -> None:
    """Raise a ValueError naming the table and every required column it lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing required column(s) {missing}; got {list(frame.columns)}")


def signal_matrix(candidates: pd.DataFrame) -> np.ndarray:
    """Boolean matrix (rows x signals, strongest signal first); missing values count as False."""
    require_columns(candidates, SIGNAL_COLUMNS, "candidates")
    if len(candidates) == 0:
        return np.zeros((0, len(SIGNAL_COLUMNS)), dtype=bool)
    return np.column_stack([candidates[column].fillna(False).astype(bool).to_numpy() for column in SIGNAL_COLUMNS])


def strongest_signal(candidates: pd.DataFrame) -> pd.Series:
    """Name of the strongest signal shared by each pair (e.g. ``user_id``); missing when it shares none."""
    matrix = signal_matrix(candidates)
    names = np.array(SIGNAL_NAMES, dtype=object)[matrix.argmax(axis=1)] if len(matrix) else []
    result = pd.Series(names, index=candidates.index, dtype="str", name="strongest_signal")
    return result.where(matrix.any(axis=1))


def strongest_confidence(candidates: pd.DataFrame) -> pd.Series:
    """Fixed confidence of each pair's strongest signal; NaN when it shares none."""
    matrix = signal_matrix(candidates)
    confidences = np.array(list(SIGNAL_CONFIDENCE.values()))
    # Each row's maximum over the confidences of its true signals (0 where false, then NaN if none).
    best = (matrix * confidences).max(axis=1, initial=0.0)
    return pd.Series(np.where(matrix.any(axis=1), best, np.nan), index=candidates.index, name="confidence")


def matched_signals(candidates: pd.DataFrame) -> pd.Series:
    """Comma-joined names of every signal the pair shares, strongest first; missing when it shares none."""
    matrix = signal_matrix(candidates)
    joined = pd.Series("", index=candidates.index, dtype="str", name="matched_signals")
    # One vectorised string operation per signal (8 columns), not per row.
    for position, name in enumerate(SIGNAL_NAMES):
        joined = joined + np.where(matrix[:, position], name + ",", "")
    joined = joined.str.rstrip(",")
    return joined.where(joined != "")


def baseline_pick_rows(candidates: pd.DataFrame, lookback_days: float = 30.0) -> pd.DataFrame:
    """The picked candidate row per conversion (all input columns) plus ``confidence`` and
    ``strongest_signal``. Rows with ``is_bot`` true are ignored when that column is present."""
    require_columns(
        candidates,
        ["conversion_id", "click_id", "link_id", "converted_at", "clicked_at", *SIGNAL_COLUMNS],
        "candidates",
    )
    candidates = candidates.reset_index(drop=True)
    lookback = pd.Timedelta(days=lookback_days)
    eligible = (candidates["clicked_at"] <= candidates["converted_at"]) & (
        candidates["clicked_at"] >= candidates["converted_at"] - lookback
    )
    if "is_bot" in candidates.columns:
        eligible &= ~candidates["is_bot"].fillna(False).astype(bool)
    frame = candidates.loc[eligible].assign(
        confidence=strongest_confidence(candidates.loc[eligible]),
        strongest_signal=strongest_signal(candidates.loc[eligible]),
    )
    frame = frame.loc[frame["confidence"].notna()]
    frame = frame.sort_values(
        ["conversion_id", "confidence", "clicked_at", "click_id"],
        ascending=[True, False, False, True],
        kind="mergesort",
    )
    return frame.drop_duplicates("conversion_id", keep="first").reset_index(drop=True)


def baseline_pick(candidates: pd.DataFrame, lookback_days: float = 30.0) -> pd.DataFrame:
    """One row per conversion with an eligible candidate: (conversion_id, click_id, link_id, confidence,
    strongest_signal). Conversions without an eligible candidate get no row (the rule leaves them unattributed).
    """
    return baseline_pick_rows(candidates, lookback_days)[list(PICK_COLUMNS)]
