"""Fellegi-Sunter EM for weak-only pairs (shared IP or fingerprint only), anchored by identity-linked pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from python_models.confidence.calibrators import _pav
from python_models.confidence.features import (
    _NEUTRAL_AT_WORST,
    _flag,
    _level_names,
    _monotone_chains,
    _raw_strong,
    _weak_levels,
    linked_pairs,
)
from python_models.confidence.model import COMPARISONS, MatchModelConfig, WeakModel, prior_model
from python_models.confidence.scoring import _score_priors


def _fit_weak_model(candidates: pd.DataFrame, config: MatchModelConfig) -> tuple[WeakModel | None, dict[str, float]]:
    """Fellegi-Sunter EM on weak-only pairs, m-probabilities anchored by identity-linked weak pairs."""
    linked = linked_pairs(candidates)
    weak = ~linked
    shares_weak = _flag(candidates, "sig_ip") | _flag(candidates, "sig_ip_ua") | _flag(candidates, "sig_fingerprint")
    anchor = linked & ~_raw_strong(candidates) & shares_weak
    stats = {"weak_anchor_pairs": float(anchor.sum()), "weak_model_used": 0.0}
    if weak.sum() < config.weak_min_pairs or anchor.sum() < config.weak_min_anchors:
        return None, stats
    levels = _weak_levels(candidates)
    weak_levels = {c: lv[weak] for c, lv in levels.items()}
    anchor_levels = {c: lv[anchor] for c, lv in levels.items()}
    sizes = {c: len(_level_names(c)) for c in COMPARISONS}
    anchor_w = config.weak_anchor_weight
    # Level frequencies over weak + anchor pairs: sparse levels are smoothed towards a Bayes factor of 1.
    share = {
        c: (np.bincount(weak_levels[c], minlength=sizes[c]) + np.bincount(anchor_levels[c], minlength=sizes[c]) + 1e-3)
        for c in COMPARISONS
    }
    share = {c: v / v.sum() for c, v in share.items()}
    weak_rows = np.flatnonzero(weak)
    r = np.clip(_score_priors(prior_model(config), candidates.iloc[weak_rows], withhold_direct=True), 0.01, 0.99)
    alpha = config.weak_smoothing
    log_bf: dict[str, np.ndarray] = {}
    converged, iterations = False, 0
    while iterations < config.weak_max_iterations:
        iterations += 1
        lam = float(np.clip(r.mean(), 1e-6, 1 - 1e-6))
        matches = r.sum() + anchor_w * anchor.sum()
        non_matches = (1 - r).sum()
        z = np.full(len(r), np.log(lam / (1 - lam)))
        for c in COMPARISONS:
            lv = weak_levels[c]
            m_count = np.bincount(lv, weights=r, minlength=sizes[c]) + anchor_w * np.bincount(
                anchor_levels[c], minlength=sizes[c]
            )
            u_count = np.bincount(lv, weights=1 - r, minlength=sizes[c])
            m = (m_count + alpha * share[c]) / (matches + alpha)
            u = (u_count + alpha * share[c]) / (non_matches + alpha)
            bf = np.log(m) - np.log(u)
            weight = m_count + u_count
            for chain in _monotone_chains(c):
                bf[chain] = _pav(bf[chain], weight[chain], increasing=False)
                if c in _NEUTRAL_AT_WORST:
                    # The last level is at most neutral; this also keeps EM from reading the two blocking
                    # channels (IP-only vs fingerprint-only pairs) as the two classes.
                    bf[chain[-1]] = min(bf[chain[-1]], 0.0)
            log_bf[c] = bf
            z += bf[lv]
        r_new = expit(z)
        delta = float(np.abs(r_new - r).max())
        r = r_new
        if delta < 1e-7:
            converged = True
            break
    lam = float(r.mean())
    stats.update(
        {"weak_lambda": lam, "weak_iterations": float(iterations), "weak_converged": 1.0 if converged else 0.0}
    )
    if not 1e-4 < lam < config.weak_max_match_rate:
        return None, stats
    stats["weak_model_used"] = 1.0
    counts = {
        c: tuple(
            zip(
                np.bincount(weak_levels[c], minlength=sizes[c]).astype(float).tolist(),
                np.bincount(weak_levels[c], weights=r, minlength=sizes[c]).tolist(),
                strict=True,
            )
        )
        for c in COMPARISONS
    }
    model = WeakModel(
        prior_log_odds=float(np.log(lam / (1 - lam))),
        log_bayes_factors={c: tuple(log_bf[c].tolist()) for c in COMPARISONS},
        shrinkage=config.weak_shrinkage,
        level_counts=counts,
    )
    return model, stats
