"""Fitting the supervised match model on direct-click labels, and its calibration on held-out labels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from python_models.calibration import expected_calibration_error
from python_models.confidence.calibrators import _apply_calibration, _calibrator
from python_models.confidence.features import (
    _check_columns,
    _design,
    _flag,
    _raw_strong,
    _signal_counts,
    labelled_pairs,
    linked_pairs,
)
from python_models.confidence.model import _EPS, TERMS, MatchModel, MatchModelConfig, prior_model
from python_models.confidence.scoring import _score_priors
from python_models.confidence.survival import fit_unseen_later_click
from python_models.confidence.weak_pairs import _fit_weak_model


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, signs: np.ndarray) -> np.ndarray:
    """Sign-constrained L2 logistic regression (intercept unpenalised) by L-BFGS-B.

    Columns are scaled to unit RMS for the optimiser (a positive scale keeps the sign constraints); the penalty
    applies to the weights on the original scale.
    """
    scale = np.sqrt(np.mean(x * x, axis=0))
    scale[(scale == 0) | (np.arange(x.shape[1]) == 0)] = 1.0
    x = x / scale
    penalty = np.full(x.shape[1], l2) / scale**2
    penalty[0] = 0.0
    ys = 2.0 * y - 1.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        value = -log_expit(ys * z).sum() + 0.5 * (penalty * w * w).sum()
        grad = x.T @ (expit(z) - y) + penalty * w
        return value, grad

    bounds = [(0.0, None) if s > 0 else (None, 0.0) if s < 0 else (None, None) for s in signs]
    result = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x / scale


def _split_conversions(conversion_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Fold per pair: 0 train, 1 and 2 the two halves of the held-out conversions (deterministic)."""
    unique = np.sort(pd.unique(conversion_ids).astype(str))
    u = np.random.default_rng(seed).random(len(unique))
    fold = np.where(u < fraction / 2, 1, np.where(u < fraction, 2, 0))
    return fold[np.searchsorted(unique, conversion_ids.astype(str))]


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    pos = y.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _prior_fallback(
    config: MatchModelConfig,
    candidates: pd.DataFrame,
    labelled: np.ndarray,
    label: np.ndarray,
    counts: dict[str, tuple[int, int, int]],
    metrics: dict[str, float],
) -> MatchModel:
    """The priors, with the unseen-later-click estimate when the labelled conversions suffice for it.

    Too few labels to learn weights can still say how often a direct click was overtaken by one no candidate
    shows: without it, picks of a direct click or a cookie more than 72 h old were stated 0.69-0.76 and right
    6-25 % of the time on the `transfer` family's low-label worlds (seed 7)."""
    survival_hours, survival, survival_stats = fit_unseen_later_click(candidates, labelled, label)
    model = prior_model(config, counts, {**metrics, **survival_stats})
    return replace(model, survival_hours=survival_hours, survival=survival)


def fit_match_model(candidates: pd.DataFrame, config: MatchModelConfig | None = None) -> MatchModel:
    """Learn P(click made by the converter | signals, features); see the module docstring for the design.

    ``candidates`` is ``int_match_candidates``: conversion_id, sig_* booleans, gap_seconds,
    fingerprint_popularity, ip_popularity, ua_family_match, inapp_to_main_switch, conversion_has_direct_click
    and, for the best labels, click_identity_id. Falls back to the priors (``source='prior'``) when fewer than
    ``config.min_labelled_conversions`` labelled conversions exist or a split lacks a class. Deterministic for
    a given input and ``config.seed``.
    """
    config = config or MatchModelConfig()
    _check_columns(candidates)
    labelled, label = labelled_pairs(candidates)
    counts = _signal_counts(candidates, labelled, label)
    conv = candidates["conversion_id"].to_numpy()[labelled]
    n_labelled = int(pd.unique(conv).size)
    metrics: dict[str, float] = {
        "n_labelled_conversions": float(n_labelled),
        "min_labelled_conversions": float(config.min_labelled_conversions),
        "n_labelled_pairs": float(labelled.sum()),
        "n_candidate_pairs": float(len(candidates)),
        "weak_pairs": float((~linked_pairs(candidates)).sum()),
    }
    if n_labelled < config.min_labelled_conversions:
        return _prior_fallback(config, candidates, labelled, label, counts, metrics)

    rows = np.flatnonzero(labelled)
    sub = candidates.iloc[rows]
    y = label[rows].astype(float)
    direct = _flag(sub, "sig_direct_click")
    # On the direct pair the identity link is (mostly) the withheld direct click itself.
    identity = np.where(direct, _raw_strong(sub), _flag(sub, "sig_identity"))
    x = _design(sub, identity)
    fold = _split_conversions(conv, config.holdout_fraction, config.seed)
    train, held = fold == 0, fold > 0
    if any(len(np.unique(y[mask])) < 2 for mask in (train, fold == 1, fold == 2)):
        metrics["single_class_split"] = 1.0
        return _prior_fallback(config, candidates, labelled, label, counts, metrics)

    w = _fit_logistic(x[train], y[train], config.l2, np.array(list(TERMS.values())))
    z = x @ w
    # Cross-fitted calibration: each held-out half is scored by a calibrator fitted on the other half (honest
    # held-out probabilities for the asset check), the stored calibrator is fitted on both halves.
    out_of_fold = np.zeros(len(y))
    for a, b in ((1, 2), (2, 1)):
        fit_on, score_on = fold == a, fold == b
        cal = _calibrator(z[fit_on], y[fit_on], config.calibration)
        out_of_fold[score_on] = _apply_calibration(z[score_on], config.calibration, *cal)
    platt, iso_x, iso_y = _calibrator(z[held], y[held], config.calibration)

    weak, weak_stats = _fit_weak_model(candidates, config) if config.weak_model else (None, {"weak_model_used": 0.0})
    metrics.update(weak_stats)
    survival_hours, survival, survival_stats = fit_unseen_later_click(candidates, labelled, label)
    metrics.update(survival_stats)
    p_held = out_of_fold[held]
    p_prior = _score_priors(prior_model(config), sub.iloc[np.flatnonzero(held)], withhold_direct=True)
    region = np.where(linked_pairs(sub), "linked", "weak")
    metrics.update(
        {
            "n_train_pairs": float(train.sum()),
            "n_holdout_pairs": float(held.sum()),
            "holdout_positive_rate": float(y[held].mean()),
            "holdout_log_loss": _log_loss(p_held, y[held]),
            "holdout_log_loss_priors": _log_loss(p_prior, y[held]),
            "holdout_auc": _auc(p_held, y[held]),
            "holdout_auc_priors": _auc(p_prior, y[held]),
            "holdout_ece": expected_calibration_error(p_held, y[held]),
        }
    )
    holdout = pd.DataFrame(
        {
            "conversion_id": sub["conversion_id"].to_numpy()[held],
            "region": region[held],
            "probability": p_held,
            "label": y[held].astype(bool),
        }
    )
    return MatchModel(
        source="learned",
        coefficients=dict(zip(TERMS, w.tolist(), strict=True)),
        calibration=config.calibration,
        platt=platt,
        isotonic_x=tuple(iso_x.tolist()),
        isotonic_y=tuple(iso_y.tolist()),
        weak=weak,
        priors=dict(config.priors),
        direct_confidence=config.direct_confidence,
        prior_popularity_exponent=config.prior_popularity_exponent,
        prior_reference_popularity=config.prior_reference_popularity,
        prior_half_life_hours=config.prior_half_life_hours,
        prior_base_odds=config.prior_base_odds,
        prior_network_mismatch=config.prior_network_mismatch,
        signal_counts=counts,
        metrics=metrics,
        holdout=holdout,
        survival_hours=survival_hours,
        survival=survival,
    )


def fit_window_start(pairs_per_day: pd.DataFrame, max_pairs: int) -> object | None:
    """The first conversion date the fit reads: the newest days whose candidate pairs add up to at most
    ``max_pairs``, and always the newest day. ``pairs_per_day``: conversion_date, pairs (the fit window's days).

    This bounds what the fit holds in memory (on Spark, the driver's share of the run) whatever the traffic; whole
    days rather than a sample of pairs, so the fit sees every candidate of the conversions it reads. None when there
    is no day."""
    if pairs_per_day.empty:
        return None
    newest_first = pairs_per_day.sort_values("conversion_date", ascending=False)
    cumulative = newest_first["pairs"].astype("int64").cumsum().to_numpy()
    kept = max(1, int((cumulative <= max_pairs).sum()))
    return newest_first["conversion_date"].iloc[kept - 1]
