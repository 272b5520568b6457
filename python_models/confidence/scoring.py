"""Scoring candidate pairs with a fitted (or prior) match model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from python_models.confidence.calibrators import _apply_calibration
from python_models.confidence.features import (
    _check_columns,
    _design,
    _flag,
    _number,
    _signals,
    _weak_levels,
    linked_pairs,
)
from python_models.confidence.model import COMPARISONS, TERMS, MatchModel, WeakModel

# --------------------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------------------


def weak_odds(model: MatchModel, prior: float, popularity: np.ndarray) -> np.ndarray:
    """A fingerprint / IP prior at a value's popularity and a gap of 0, in odds:
    odds(prior) * (reference / popularity) ** exponent (``MatchModelConfig`` says why).

    Odds, not probability: the prior holds at the reference popularity, and a value rarer than the reference raises
    it towards 1 rather than past it."""
    prior = min(max(float(prior), 0.0), 1.0 - 1e-9)
    scale = (model.prior_reference_popularity / np.asarray(popularity, dtype=float)) ** model.prior_popularity_exponent
    return prior / (1.0 - prior) * scale


def _gap_decay(model: MatchModel, gap_hours: np.ndarray) -> np.ndarray:
    return 0.5 ** (np.asarray(gap_hours, dtype=float) / model.prior_half_life_hours)


def weak_evidence(model: MatchModel, candidates: pd.DataFrame) -> np.ndarray:
    """P(converter's click) from the shared fingerprint and network of each pair, 0 where it shares neither.

    Fellegi-Sunter over a base odds B: a weak prior's odds are B times the Bayes factor of its agreement, so the
    fingerprint and the network (IP + user agent, else IP: the stronger) multiply as odds_fp * odds_ip / B. A
    fingerprint without the network has its odds times ``prior_network_mismatch``; an IP without the fingerprint
    keeps its odds (the converter's other browsers and devices on the same network have other fingerprints). The
    gap decays the result once."""
    sig = _signals(candidates)
    fp_popularity = _number(candidates, "fingerprint_popularity", 1.0, 1.0)
    ip_popularity = _number(candidates, "ip_popularity", 1.0, 1.0)
    pri = model.priors
    fingerprint = sig["fingerprint"]
    network = sig["ip"] | sig["ip_ua"]
    odds_fp = weak_odds(model, pri["fingerprint"], fp_popularity)
    odds_net = np.maximum(
        sig["ip_ua"] * weak_odds(model, pri["ip_ua"], ip_popularity),
        sig["ip"] * weak_odds(model, pri["ip"], ip_popularity),
    )
    odds = np.select(
        [fingerprint & network, fingerprint, network],
        [odds_fp * odds_net / model.prior_base_odds, odds_fp * model.prior_network_mismatch, odds_net],
        0.0,
    )
    odds = odds * _gap_decay(model, _number(candidates, "gap_seconds", 0.0, 0.0) / 3600.0)
    return odds / (1.0 + odds)


def _score_priors(model: MatchModel, candidates: pd.DataFrame, withhold_direct: bool = False) -> np.ndarray:
    """Noisy-or of the strongest prior per family. A shared fingerprint or network is device evidence beside the
    session and the cookie (``weak_evidence``): they agree whenever the cookie does, so they add nothing to it."""
    sig = _signals(candidates)
    pri = model.priors
    device = np.maximum.reduce(
        [sig["session"] * pri["session"], sig["cookie"] * pri["cookie"], weak_evidence(model, candidates)]
    )
    account = np.maximum(sig["user_id"] * pri["user_id"], sig["email"] * pri["email"])
    identity = sig["identity"] * pri["identity"]
    miss = (1 - device) * (1 - account) * (1 - identity)
    if not withhold_direct:
        miss = miss * np.where(sig["direct_click"], 1 - model.direct_confidence, 1.0)
    return 1 - miss


def _score_weak(weak: WeakModel, candidates: pd.DataFrame) -> np.ndarray:
    levels = _weak_levels(candidates)
    z = np.full(len(candidates), weak.prior_log_odds)
    for c in COMPARISONS:
        z += np.asarray(weak.log_bayes_factors[c])[levels[c]]
    return (1 - weak.shrinkage) * expit(z) + weak.shrinkage * expit(weak.prior_log_odds)


def score_candidates(candidates: pd.DataFrame, model: MatchModel) -> np.ndarray:
    """Calibrated probability, per candidate row, that the click was made by the converting person."""
    _check_columns(candidates)
    if not model.is_learned:
        return np.clip(_score_priors(model, candidates), 0.0, 1.0)
    w = np.array([model.coefficients[t] for t in TERMS])
    p = _apply_calibration(
        _design(candidates) @ w,
        model.calibration,
        model.platt,
        np.asarray(model.isotonic_x),
        np.asarray(model.isotonic_y),
    )
    # Weak-only pairs: the labels cannot see them (see the module docstring), so the Fellegi-Sunter model, or
    # the priors when it could not be fitted.
    weak = np.flatnonzero(~linked_pairs(candidates))
    if len(weak):
        rows = candidates.iloc[weak]
        p[weak] = _score_weak(model.weak, rows) if model.weak is not None else _score_priors(model, rows)
    # A direct click id is near-certain evidence on top of whatever else the pair shares.
    direct = _flag(candidates, "sig_direct_click")
    p = np.where(direct, 1 - (1 - model.direct_confidence) * (1 - p), p)
    return np.clip(p, 0.0, 1.0)
