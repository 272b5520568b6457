"""Learned, calibrated match confidence: P(this candidate click was made by the converting person).

The candidate pairs fall in two regions that need different evidence:

* **Linked pairs** share a strong signal (cookie, session, user_id, email), a resolved identity or a direct click
  id. Here direct-click labels are informative. A conversion carrying a direct click id that matches a known
  click is a *labelled conversion*: that click is certainly the converter's; its other candidates are positives
  when they belong to the direct click's resolved identity (``click_identity_id``; ``sig_identity`` as a proxy)
  and negatives otherwise. An L2-regularised, sign-constrained logistic regression over every signal and
  feature (direct click withheld; TF terms ``sig * log(popularity)`` and time-decay terms ``sig * log1p(gap
  hours)`` for fingerprint and IP) is fitted on the labelled pairs and calibrated (Platt, or interpolated
  isotonic) on held-out labelled conversions. On the direct pair the identity signal is masked down to its raw
  strong signals: there the identity link exists only because of the withheld direct click.
* **Weak-only pairs** share nothing but an IP, an IP + user agent or a fingerprint. Identity-based labels are
  blind here: the converter's own clicks from another browser jar (an in-app webview, then Safari) or another
  device are in another identity, so the labels call them negatives although many are the converter's. These
  pairs get a Fellegi-Sunter model (Splink's approach) fitted by EM on all weak-only pairs, labelled or not.
  Its comparisons are the time gap, the network (IP popularity level x IP + user agent x in-app switch x device
  family match: the term-frequency adjustment is the popularity level) and the fingerprint popularity level;
  pairs that share a weak signal *and* a resolved identity (known matches that look like cross-jar matches)
  anchor the m-probabilities. Bayes factors are kept monotone (non-increasing in gap and in popularity), and
  the longest gaps and most crowded IPs are at most neutral evidence.
  Unsupervised EM needs volume. With fewer than ``weak_min_pairs`` (20,000) weak-only pairs or
  ``weak_min_anchors`` anchors, or an implausible fit, the weak-only pairs get the priors (below) instead:
  shrunk by the popularity of the shared fingerprint or IP and decaying with the gap.
  The 20,000 is measured on generated worlds, by pair-probability ECE against the truth:
  - 10,000 people (4.6k-5.4k weak-only pairs; seeds 1, 2, 3): EM 0.089 / 0.071 / 0.093, priors 0.029 / 0.028 /
    0.042. Every weak-only pair shares a fingerprint or an IP, because that is how candidates are blocked, so
    the two comparisons are dependent. EM's classes followed "shares a fingerprint" against "shares an IP": on
    seed 2 every fingerprint-only pair scored 0.84 where 14 % were matches. In a small world many phone
    fingerprints have 4-20 cookies, under the candidate guard of 20, so most fingerprint-only pairs are
    strangers. In larger worlds those fingerprints have hundreds of cookies and are never joined on; the
    fingerprint-only pairs that remain share rare fingerprints and are matches.
  - 20,000 people (8.1k pairs; seed 4): EM 0.045, priors 0.034.
  - 100,000 people (35k / 37k pairs; seeds 1, 2): EM 0.025 / 0.021, priors 0.040 / 0.034, with an equal or
    better top candidate. The priors miss in-app -> main browser handoffs there: a pair sharing a fingerprint
    and an IP under another user agent is 99 % a match, and the priors give it 0.31. Last-touch recall was
    0.776 with EM against 0.711 with the priors (seed 1).
  ``ATTRIBUTION_WEAK_PAIR_MODEL=priors`` turns EM off in the pipeline.

Direct-click pairs are then combined by noisy-or with ``direct_confidence`` (0.995). With fewer labelled
conversions than ``min_labelled_conversions`` (or a single-class split) the model is the old fixed priors,
combined instead of maxed (strongest prior per family by noisy-or, fingerprint / IP priors shrunk by popularity
and decaying with the gap), and ``MatchModel.source`` is ``'prior'``.

The model is a small table (``model_to_frame``) fitted daily and read back hourly (``model_from_frame``).
Everything here is vectorised numpy; there is no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from python_models.baseline import SIGNAL_CONFIDENCE

# Old app's fixed priors (direct click first); 'identity' is new (same resolved identity, no raw strong signal).
DEFAULT_PRIORS: Mapping[str, float] = {**SIGNAL_CONFIDENCE, "identity": 0.80}
SIGNALS: tuple[str, ...] = tuple(DEFAULT_PRIORS)
FEATURE_COLUMNS: tuple[str, ...] = (
    "gap_seconds",
    "fingerprint_popularity",
    "ip_popularity",
    "ua_family_match",
    "inapp_to_main_switch",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("conversion_id", *(f"sig_{s}" for s in SIGNALS), *FEATURE_COLUMNS)

# Logistic terms and the sign each weight is constrained to (+1: >= 0, -1: <= 0, 0: free).
TERMS: Mapping[str, int] = {
    "intercept": 0,
    "user_id": 1,
    "email": 1,
    "session": 1,
    "cookie": 1,
    "identity": 1,
    "fingerprint": 1,
    "fingerprint_popularity": -1,  # * log(fingerprint_popularity): the term-frequency adjustment
    "fingerprint_gap_decay": -1,  # * log1p(gap hours)
    "ip_ua": 1,
    "ip": 1,  # any IP match (ip or ip+ua)
    "ip_popularity": -1,
    "ip_gap_decay": -1,
    "ua_family_match": 1,
    "inapp_to_main_switch": 0,
    "inapp_switch_same_ip": 0,  # in-app browser -> main browser on the same network: the classic handover
    "gap": -1,  # log1p(gap hours), every pair: recency, and the tie-break between otherwise equal clicks
    "gap_under_10_minutes": 0,
}

# Fellegi-Sunter comparisons of weak-only pairs: level edges and level names.
GAP_EDGES_HOURS: tuple[float, ...] = (1 / 6, 1.0, 6.0, 24.0, 72.0, 240.0)
GAP_LEVELS: tuple[str, ...] = ("<10m", "10m-1h", "1h-6h", "6h-24h", "1d-3d", "3d-10d", ">=10d")
IP_POPULARITY_EDGES: tuple[float, ...] = (1.5, 3.5, 10.5, 50.5)
FINGERPRINT_POPULARITY_EDGES: tuple[float, ...] = (1.5, 3.5, 10.5, 100.5)
POPULARITY_LEVELS_IP: tuple[str, ...] = ("none", "1", "2-3", "4-10", "11-50", ">50")
POPULARITY_LEVELS_FP: tuple[str, ...] = ("none", "1", "2-3", "4-10", "11-100", ">100")
COMPARISONS: tuple[str, ...] = ("gap", "network", "fingerprint")

FORMAT_VERSION = 2
_EPS = 1e-6
_CALIBRATION_CODES = {"none": 0.0, "platt": 1.0, "isotonic": 2.0}


@dataclass(frozen=True)
class MatchModelConfig:
    """How ``fit_match_model`` learns (and when it refuses to)."""

    min_labelled_conversions: int = 200
    holdout_fraction: float = 0.3
    l2: float = 1.0
    calibration: Literal["platt", "isotonic"] = "platt"
    seed: int = 20240601
    direct_confidence: float = 0.995
    priors: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    # Prior fallback only: fingerprint/IP priors * popularity**-exponent * 0.5**(gap_hours / half_life).
    prior_popularity_exponent: float = 0.5
    prior_half_life_hours: float = 72.0
    # Weak-only Fellegi-Sunter model (EM). Unsupervised EM needs volume: below these sizes (or when the fit is
    # implausible) the priors are used; the module docstring gives the measurements behind weak_min_pairs.
    weak_model: bool = True
    weak_min_pairs: int = 20000
    weak_min_anchors: int = 100
    weak_max_match_rate: float = 0.5
    weak_max_iterations: int = 500
    weak_smoothing: float = 5.0  # pseudo-pairs pulling sparse levels' Bayes factor towards 1
    weak_anchor_weight: float = 1.0  # weight of identity-linked anchor pairs in the m-probabilities
    # p = (1 - shrinkage) * EM posterior + shrinkage * weak match rate: naive-Bayes posteriors are overconfident
    # at both ends (the comparisons are not independent given the match status); nothing in a shared IP or
    # fingerprint alone makes a pair certain or impossible.
    weak_shrinkage: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.calibration not in ("platt", "isotonic"):
            raise ValueError(f"calibration must be 'platt' or 'isotonic', got {self.calibration!r}")
        if not 0 <= self.weak_shrinkage < 1:
            raise ValueError(f"weak_shrinkage must be in [0, 1), got {self.weak_shrinkage}")
        if not 0 < self.direct_confidence < 1:
            raise ValueError(f"direct_confidence must be in (0, 1), got {self.direct_confidence}")
        missing = sorted(set(SIGNALS) - set(self.priors))
        if missing:
            raise ValueError(f"priors lacks signals {missing}")


@dataclass(frozen=True)
class WeakModel:
    """Fellegi-Sunter model of weak-only pairs: prior log-odds and a log Bayes factor per comparison level."""

    prior_log_odds: float
    log_bayes_factors: Mapping[str, tuple[float, ...]]
    shrinkage: float = 0.0
    # per comparison level: (weak-only pairs in the level, expected matches among them)
    level_counts: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class MatchModel:
    """A fitted (or prior-only) match-confidence model."""

    source: Literal["learned", "prior"]
    coefficients: Mapping[str, float]
    calibration: Literal["none", "platt", "isotonic"]
    platt: tuple[float, float] = (1.0, 0.0)
    isotonic_x: tuple[float, ...] = ()
    isotonic_y: tuple[float, ...] = ()
    weak: WeakModel | None = None
    priors: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PRIORS))
    direct_confidence: float = 0.995
    prior_popularity_exponent: float = 0.5
    prior_half_life_hours: float = 72.0
    # signal -> (labelled pairs with the signal, positives, negatives)
    signal_counts: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    # P(no unseen later click by the converter | hours since a touch): knots (hours, probability); empty = 1.
    survival_hours: tuple[float, ...] = ()
    survival: tuple[float, ...] = ()
    # Held-out labelled pairs right after fitting (conversion_id, region, probability, label): the label model's
    # out-of-fold calibrated probabilities. Not persisted by model_to_frame.
    holdout: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    @property
    def is_learned(self) -> bool:
        return self.source == "learned"

    @property
    def used_priors(self) -> bool:
        """True when labels were too few and the fixed priors are used (say so in reports)."""
        return self.source == "prior"

    @property
    def n_labelled_conversions(self) -> int:
        return int(self.metrics.get("n_labelled_conversions", 0))


# --------------------------------------------------------------------------------------------------------------
# Features and labels
# --------------------------------------------------------------------------------------------------------------


def _check_columns(candidates: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in candidates.columns]
    if missing:
        raise KeyError(f"match candidates lack column(s) {missing}; have {list(candidates.columns)}")


def _flag(candidates: pd.DataFrame, column: str) -> np.ndarray:
    return candidates[column].fillna(False).to_numpy(dtype=bool)


def _number(candidates: pd.DataFrame, column: str, lower: float, fill: float) -> np.ndarray:
    """A numeric feature; missing -> ``fill``, below ``lower`` -> ``lower`` (a click a few seconds after the
    conversion under the candidates' clock-skew tolerance has gap 0). Text that is not a number is an error."""
    raw = candidates[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        example = raw[bad].iloc[0]
        raise ValueError(
            f"match candidates column {column} has {int(bad.sum())} non-numeric value(s), e.g. {example!r}"
        )
    return np.maximum(values.fillna(fill).to_numpy(dtype=float), lower)


def _signals(candidates: pd.DataFrame) -> dict[str, np.ndarray]:
    return {s: _flag(candidates, f"sig_{s}") for s in SIGNALS}


def _design(candidates: pd.DataFrame, identity: np.ndarray | None = None) -> np.ndarray:
    """Model matrix, one column per ``TERMS`` entry (direct click withheld)."""
    sig = _signals(candidates)
    if identity is not None:
        sig["identity"] = identity
    gap_hours = _number(candidates, "gap_seconds", 0.0, 0.0) / 3600.0
    log_gap = np.log1p(gap_hours)
    log_fp = np.log(_number(candidates, "fingerprint_popularity", 1.0, 1.0))
    log_ip = np.log(_number(candidates, "ip_popularity", 1.0, 1.0))
    fp = sig["fingerprint"].astype(float)
    ip_any = (sig["ip"] | sig["ip_ua"]).astype(float)
    inapp = _flag(candidates, "inapp_to_main_switch").astype(float)
    columns = {
        "intercept": np.ones(len(candidates)),
        "user_id": sig["user_id"],
        "email": sig["email"],
        "session": sig["session"],
        "cookie": sig["cookie"],
        "identity": sig["identity"],
        "fingerprint": fp,
        "fingerprint_popularity": fp * log_fp,
        "fingerprint_gap_decay": fp * log_gap,
        "ip_ua": sig["ip_ua"],
        "ip": ip_any,
        "ip_popularity": ip_any * log_ip,
        "ip_gap_decay": ip_any * log_gap,
        "ua_family_match": _flag(candidates, "ua_family_match"),
        "inapp_to_main_switch": inapp,
        "inapp_switch_same_ip": inapp * ip_any,
        "gap": log_gap,
        "gap_under_10_minutes": gap_hours < 1.0 / 6.0,
    }
    return np.column_stack([np.asarray(columns[t], dtype=float) for t in TERMS])


def labelled_pairs(candidates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(mask of pairs belonging to labelled conversions, label of every pair; meaningful under the mask).

    A labelled conversion has exactly one direct-click candidate (and, when the column is present,
    ``conversion_has_direct_click``). Positives: the direct pair and clicks of the direct click's identity.
    """
    _check_columns(candidates)
    direct = _flag(candidates, "sig_direct_click")
    conv = candidates["conversion_id"].to_numpy()
    codes, _ = pd.factorize(conv)
    if (codes < 0).any():
        raise ValueError(f"match candidates column conversion_id has {int((codes < 0).sum())} null value(s)")
    n_direct = np.bincount(codes[direct], minlength=codes.max() + 1 if len(codes) else 0)
    labelled = n_direct[codes] == 1 if len(codes) else np.zeros(0, dtype=bool)
    if "conversion_has_direct_click" in candidates.columns:
        labelled &= _flag(candidates, "conversion_has_direct_click")
    if "click_identity_id" in candidates.columns:
        identity = candidates["click_identity_id"].to_numpy(dtype=object)
        direct_identity = np.full(len(n_direct), None, dtype=object)
        direct_identity[codes[direct]] = identity[direct]
        same = pd.notna(identity) & (identity == direct_identity[codes])
        label = direct | same
    else:
        label = direct | _flag(candidates, "sig_identity")
    return labelled, label


def _signal_counts(candidates: pd.DataFrame, labelled: np.ndarray, label: np.ndarray) -> dict:
    sig = _signals(candidates)
    sig["ip"] = sig["ip"] | sig["ip_ua"]
    out = {}
    for s in SIGNALS:
        has = sig[s] & labelled
        pos = int((has & label).sum())
        out[s] = (int(has.sum()), pos, int(has.sum()) - pos)
    return out


def _raw_strong(candidates: pd.DataFrame) -> np.ndarray:
    """Pairs sharing a strong identifier directly (cookie, session, user_id, email)."""
    return (
        _flag(candidates, "sig_cookie")
        | _flag(candidates, "sig_session")
        | _flag(candidates, "sig_user_id")
        | _flag(candidates, "sig_email")
    )


def linked_pairs(candidates: pd.DataFrame) -> np.ndarray:
    """Pairs scored by the label model: a strong signal, a resolved identity or a direct click in common."""
    return _raw_strong(candidates) | _flag(candidates, "sig_identity") | _flag(candidates, "sig_direct_click")


def _weak_levels(candidates: pd.DataFrame) -> dict[str, np.ndarray]:
    """Comparison level of every pair for the weak-only Fellegi-Sunter model."""
    gap_hours = _number(candidates, "gap_seconds", 0.0, 0.0) / 3600.0
    ip_any = _flag(candidates, "sig_ip") | _flag(candidates, "sig_ip_ua")
    ip_level = np.where(ip_any, np.digitize(_number(candidates, "ip_popularity", 1.0, 1.0), IP_POPULARITY_EDGES) + 1, 0)
    fp_level = np.where(
        _flag(candidates, "sig_fingerprint"),
        np.digitize(_number(candidates, "fingerprint_popularity", 1.0, 1.0), FINGERPRINT_POPULARITY_EDGES) + 1,
        0,
    )
    ip_ua = _flag(candidates, "sig_ip_ua").astype(np.int64)
    inapp = _flag(candidates, "inapp_to_main_switch").astype(np.int64)
    ua = _flag(candidates, "ua_family_match").astype(np.int64)
    return {
        "gap": np.digitize(gap_hours, GAP_EDGES_HOURS),
        "network": ((ip_level * 2 + ip_ua) * 2 + inapp) * 2 + ua,
        "fingerprint": fp_level,
    }


def _level_names(comparison: str) -> list[str]:
    if comparison == "gap":
        return list(GAP_LEVELS)
    if comparison == "fingerprint":
        return list(POPULARITY_LEVELS_FP)
    return [
        f"ip={ip}|ip_ua={bool(ipua)}|inapp_switch={bool(inapp)}|ua_family_match={bool(ua)}".lower()
        for ip in POPULARITY_LEVELS_IP
        for ipua in (0, 1)
        for inapp in (0, 1)
        for ua in (0, 1)
    ]


# Comparisons whose last level along each monotone chain is no evidence of a match: a click ten days or more
# before the conversion, an IP shared by more than 50 fingerprints (strangers produce these as often as the
# converter does). Fingerprints are exempt: in-app and main browsers of one phone share popular fingerprints.
_NEUTRAL_AT_WORST: frozenset[str] = frozenset({"gap", "network"})


def _monotone_chains(comparison: str) -> list[list[int]]:
    """Level sequences along which the Bayes factor may not increase (longer gap, more popular value)."""
    if comparison == "gap":
        return [list(range(len(GAP_LEVELS)))]
    if comparison == "fingerprint":
        return [list(range(1, len(POPULARITY_LEVELS_FP)))]
    return [
        [((ip * 2 + ipua) * 2 + inapp) * 2 + ua for ip in range(1, len(POPULARITY_LEVELS_IP))]
        for ipua in (0, 1)
        for inapp in (0, 1)
        for ua in (0, 1)
    ]


# --------------------------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------------------------


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


def _fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """p = sigmoid(a * z + b), a >= 0, with a whisper of L2 so separable holdouts stay finite."""
    x = np.column_stack([z, np.ones_like(z)])
    ys = 2.0 * y - 1.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        t = x @ w
        return -log_expit(ys * t).sum() + 1e-3 * w[0] ** 2, x.T @ (expit(t) - y) + np.array([2e-3 * w[0], 0.0])

    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0.0, None), (None, None)])
    return float(result.x[0]), float(result.x[1])


def _pav(values: np.ndarray, weights: np.ndarray, increasing: bool = True) -> np.ndarray:
    """Weighted pool-adjacent-violators: the closest monotone sequence (few elements; loops are fine)."""
    sign = 1.0 if increasing else -1.0
    blocks: list[list[float]] = []  # [weighted sum, weight, n elements]
    for v, w in zip((sign * values).tolist(), np.maximum(weights, 1e-12).tolist(), strict=True):
        blocks.append([v * w, w, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s2, w2, n2 = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += w2
            blocks[-1][2] += n2
    out = np.concatenate([np.full(int(n), s / w) for s, w, n in blocks]) if blocks else np.zeros(0)
    return sign * out


def _fit_isotonic(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression of labels on scores; knots at each pooled block's mean score and mean label.

    Interpolating between knots (instead of a step function) keeps distinct scores distinct, which matters for
    ranking the candidates of one conversion.
    """
    order = np.argsort(z, kind="stable")
    zs, ys = z[order], y[order].astype(float)
    uniq, start = np.unique(zs, return_index=True)
    weights = np.diff(np.append(start, len(zs))).astype(float)
    mean_y = np.add.reduceat(ys, start) / weights
    fitted = _pav(mean_y, weights)
    # One knot per pooled block (runs of equal fitted values), at the block's weighted mean score.
    block = np.concatenate([[0], np.cumsum(np.diff(fitted) != 0)])
    w_block = np.bincount(block, weights=weights)
    x = np.bincount(block, weights=weights * uniq) / w_block
    y_knots = np.bincount(block, weights=weights * fitted) / w_block
    return x, y_knots


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


def prior_model(
    config: MatchModelConfig | None = None,
    signal_counts: Mapping[str, tuple[int, int, int]] | None = None,
    metrics: Mapping[str, float] | None = None,
) -> MatchModel:
    """The fallback model: the fixed priors, combined by noisy-or across signal families."""
    config = config or MatchModelConfig()
    return MatchModel(
        source="prior",
        coefficients={},
        calibration="none",
        priors=dict(config.priors),
        direct_confidence=config.direct_confidence,
        prior_popularity_exponent=config.prior_popularity_exponent,
        prior_half_life_hours=config.prior_half_life_hours,
        signal_counts=dict(signal_counts or {}),
        metrics=dict(metrics or {}),
    )


def _calibrator(z: np.ndarray, y: np.ndarray, method: str) -> tuple[tuple[float, float], np.ndarray, np.ndarray]:
    if method == "platt":
        return _fit_platt(z, y), np.zeros(0), np.zeros(0)
    iso_x, iso_y = _fit_isotonic(z, y)
    return (1.0, 0.0), iso_x, iso_y


def _apply_calibration(
    z: np.ndarray, method: str, platt: tuple[float, float], iso_x: np.ndarray, iso_y: np.ndarray
) -> np.ndarray:
    if method == "platt":
        return expit(platt[0] * z + platt[1])
    if method == "isotonic":
        return np.interp(z, iso_x, iso_y)
    return expit(z)


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
        return prior_model(config, counts, metrics)

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
        return prior_model(config, counts, metrics)

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
        prior_half_life_hours=config.prior_half_life_hours,
        signal_counts=counts,
        metrics=metrics,
        holdout=holdout,
        survival_hours=survival_hours,
        survival=survival,
    )


# --------------------------------------------------------------------------------------------------------------
# Unseen later clicks: P(the converter made no click we cannot see after a touch)
# --------------------------------------------------------------------------------------------------------------

# Hour edges of the touch-age bins of the unseen-later-click estimate (log-spaced: conversions follow clicks fast).
SURVIVAL_EDGES_HOURS: tuple[float, ...] = (0.0, 1 / 6, 1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 72.0, 120.0, 240.0)
# Placebo conversion times per labelled conversion (an even grid over the first half of the lookback).
SURVIVAL_PLACEBOS = 48
SURVIVAL_MIN_CONVERSIONS = 200
SURVIVAL_MIN_BIN_PAIRS = 15


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
    smallest density ratio f_direct / f_stale over populated bins: the oldest ages are almost all stale), and
    P(stale | age) = pi * f_stale / f_direct, made non-decreasing in age. Returns knots (bin-centre hours,
    1 - P(stale)) and fit statistics; empty knots (no adjustment) when labels are too few.
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
    populated = (n_direct >= SURVIVAL_MIN_BIN_PAIRS) & (n_placebo > 0)
    if not populated.any():
        return (), (), stats
    pi = float(min(1.0, np.min(f_direct[populated] / f_stale[populated])))
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


# --------------------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------------------


def _score_priors(model: MatchModel, candidates: pd.DataFrame, withhold_direct: bool = False) -> np.ndarray:
    """Noisy-or of the strongest prior per family; weak priors shrink with popularity and decay with the gap."""
    sig = _signals(candidates)
    pri = model.priors
    gap_hours = _number(candidates, "gap_seconds", 0.0, 0.0) / 3600.0
    decay = 0.5 ** (gap_hours / model.prior_half_life_hours)
    k = model.prior_popularity_exponent
    fp_tf = _number(candidates, "fingerprint_popularity", 1.0, 1.0) ** -k
    ip_tf = _number(candidates, "ip_popularity", 1.0, 1.0) ** -k
    device = np.maximum.reduce(
        [
            sig["session"] * pri["session"],
            sig["cookie"] * pri["cookie"],
            sig["fingerprint"] * pri["fingerprint"] * fp_tf * decay,
        ]
    )
    account = np.maximum(sig["user_id"] * pri["user_id"], sig["email"] * pri["email"])
    network = np.maximum(sig["ip_ua"] * pri["ip_ua"], sig["ip"] * pri["ip"]) * ip_tf * decay
    identity = sig["identity"] * pri["identity"]
    miss = (1 - device) * (1 - account) * (1 - network) * (1 - identity)
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


# --------------------------------------------------------------------------------------------------------------
# Persistence and reporting
# --------------------------------------------------------------------------------------------------------------


def model_to_frame(model: MatchModel) -> pd.DataFrame:
    """The model as rows of (parameter, signal, value) for ``intermediate.match_model``."""
    rows: list[tuple[str, str, float]] = [
        ("meta", "format_version", float(FORMAT_VERSION)),
        ("meta", "is_learned", 1.0 if model.is_learned else 0.0),
        ("meta", "calibration", _CALIBRATION_CODES[model.calibration]),
        ("meta", "direct_confidence", model.direct_confidence),
        ("meta", "prior_popularity_exponent", model.prior_popularity_exponent),
        ("meta", "prior_half_life_hours", model.prior_half_life_hours),
        ("meta", "has_weak_model", 1.0 if model.weak is not None else 0.0),
        ("platt", "slope", model.platt[0]),
        ("platt", "intercept", model.platt[1]),
    ]
    rows += [("coefficient", t, float(v)) for t, v in model.coefficients.items()]
    rows += [("isotonic_x", f"knot_{i:05d}", v) for i, v in enumerate(model.isotonic_x)]
    rows += [("isotonic_y", f"knot_{i:05d}", v) for i, v in enumerate(model.isotonic_y)]
    if model.weak is not None:
        rows.append(("weak", "prior_log_odds", model.weak.prior_log_odds))
        rows.append(("weak", "shrinkage", model.weak.shrinkage))
        for c in COMPARISONS:
            names = _level_names(c)
            rows += [("weak_log_bf", f"{c}:{names[i]}", v) for i, v in enumerate(model.weak.log_bayes_factors[c])]
            for i, (n, matches) in enumerate(model.weak.level_counts.get(c, ())):
                rows += [("weak_pairs", f"{c}:{names[i]}", n), ("weak_matches", f"{c}:{names[i]}", matches)]
    rows += [("prior", s, float(v)) for s, v in model.priors.items()]
    for s, (n, pos, neg) in model.signal_counts.items():
        rows += [("n_labelled_pairs", s, float(n)), ("n_positive", s, float(pos)), ("n_negative", s, float(neg))]
    rows += [("metric", k, float(v)) for k, v in model.metrics.items()]
    rows += [("survival_hours", f"knot_{i:05d}", v) for i, v in enumerate(model.survival_hours)]
    rows += [("survival", f"knot_{i:05d}", v) for i, v in enumerate(model.survival)]
    return pd.DataFrame(rows, columns=["parameter", "signal", "value"]).astype(
        {"parameter": "str", "signal": "str", "value": "float64"}
    )


def model_from_frame(frame: pd.DataFrame) -> MatchModel:
    """Inverse of :func:`model_to_frame` (row order does not matter)."""
    missing = [c for c in ("parameter", "signal", "value") if c not in frame.columns]
    if missing:
        raise KeyError(f"match model frame lacks column(s) {missing}")
    groups: dict[str, dict[str, float]] = {}
    for p, s, v in zip(frame["parameter"], frame["signal"], frame["value"].astype(float), strict=True):
        groups.setdefault(str(p), {})[str(s)] = float(v)
    meta = groups.get("meta", {})
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"match model frame has format_version {version!r}, expected {FORMAT_VERSION}")
    calibration = {v: k for k, v in _CALIBRATION_CODES.items()}[meta["calibration"]]
    coefficients = groups.get("coefficient", {})
    if meta["is_learned"] and set(coefficients) != set(TERMS):
        raise ValueError(f"match model frame coefficients {sorted(coefficients)} do not match terms {list(TERMS)}")
    knots_x, knots_y = groups.get("isotonic_x", {}), groups.get("isotonic_y", {})
    survival_hours, survival = groups.get("survival_hours", {}), groups.get("survival", {})
    counts = {
        s: (int(n), int(groups["n_positive"][s]), int(groups["n_negative"][s]))
        for s, n in groups.get("n_labelled_pairs", {}).items()
    }
    weak = None
    if meta.get("has_weak_model"):
        bf, pairs, matches = groups["weak_log_bf"], groups.get("weak_pairs", {}), groups.get("weak_matches", {})
        keys = {c: [f"{c}:{name}" for name in _level_names(c)] for c in COMPARISONS}
        weak = WeakModel(
            prior_log_odds=groups["weak"]["prior_log_odds"],
            shrinkage=groups["weak"].get("shrinkage", 0.0),
            log_bayes_factors={c: tuple(bf[k] for k in keys[c]) for c in COMPARISONS},
            level_counts={
                c: tuple((pairs[k], matches[k]) for k in keys[c])
                for c in COMPARISONS
                if all(k in pairs for k in keys[c])
            },
        )
    return MatchModel(
        source="learned" if meta["is_learned"] else "prior",
        coefficients={t: coefficients[t] for t in TERMS} if meta["is_learned"] else {},
        calibration=calibration,  # type: ignore[arg-type]
        platt=(groups["platt"]["slope"], groups["platt"]["intercept"]),
        isotonic_x=tuple(knots_x[k] for k in sorted(knots_x)),
        isotonic_y=tuple(knots_y[k] for k in sorted(knots_y)),
        weak=weak,
        priors={s: groups["prior"][s] for s in SIGNALS},
        direct_confidence=meta["direct_confidence"],
        prior_popularity_exponent=meta["prior_popularity_exponent"],
        prior_half_life_hours=meta["prior_half_life_hours"],
        signal_counts={s: counts[s] for s in SIGNALS if s in counts},
        metrics=groups.get("metric", {}),
        survival_hours=tuple(survival_hours[k] for k in sorted(survival_hours)),
        survival=tuple(survival[k] for k in sorted(survival)),
    )


# Logistic terms reported after the signals.
_MODIFIERS: tuple[str, ...] = (
    "fingerprint_popularity",
    "fingerprint_gap_decay",
    "ip_popularity",
    "ip_gap_decay",
    "ua_family_match",
    "inapp_to_main_switch",
    "inapp_switch_same_ip",
    "gap",
    "gap_under_10_minutes",
    "intercept",
)
SIGNAL_WEIGHT_COLUMNS: tuple[str, ...] = (
    "signal",
    "prior_confidence",
    "learned_weight",
    "match_weight_log2",
    "n_labelled_pairs",
    "n_positive",
    "n_negative",
    "source",
)


def signal_weights(model: MatchModel) -> pd.DataFrame:
    """Why a match was trusted, for ``marts.match_signal_weights``.

    Rows: the nine signals (``direct_click`` first), then for a learned model the logistic modifier terms, then
    one row per populated level of the weak-only Fellegi-Sunter comparisons (``weak_gap:<10m``,
    ``weak_network:ip=1|...``, ``weak_fingerprint:>100``).

    * ``learned_weight``: logistic coefficient (natural log-odds before calibration; modifiers per unit of log
      popularity / log1p gap hours), or for a weak level its log Bayes factor ln(m/u).
    * ``match_weight_log2``: the same evidence in bits (after Platt scaling for logistic terms); for a prior model
      or the never-learned direct click, log2 odds of the fixed confidence.
    * ``n_labelled_pairs`` / ``n_positive`` / ``n_negative``: labelled pairs with the signal and their labels
      (positive = the direct click or its identity); for a weak level: weak-only pairs in the level and the EM's
      expected matches / non-matches among them (rounded).
    """
    slope = model.platt[0] if model.calibration == "platt" else 1.0
    rows: list[tuple] = []
    for s in SIGNALS:
        n, pos, neg = model.signal_counts.get(s, (0, 0, 0))
        prior = float(model.priors[s])
        if s == "direct_click":
            confidence = model.direct_confidence
            learned, bits, source = np.nan, float(np.log2(confidence / (1 - confidence))), "prior"
        elif model.is_learned:
            learned = float(model.coefficients[s])
            bits, source = learned * slope / np.log(2), "learned"
        else:
            learned, bits, source = np.nan, float(np.log2(prior / (1 - prior))), "prior"
        rows.append((s, prior, learned, bits, n, pos, neg, source))
    if model.is_learned:
        for t in _MODIFIERS:
            learned = float(model.coefficients[t])
            rows.append((t, np.nan, learned, learned * slope / np.log(2), 0, 0, 0, "learned"))
    if model.weak is not None:
        for c in COMPARISONS:
            names = _level_names(c)
            level_counts = model.weak.level_counts.get(c, ())
            for i, bf in enumerate(model.weak.log_bayes_factors[c]):
                n, matches = level_counts[i] if i < len(level_counts) else (0.0, 0.0)
                if n <= 0:
                    continue
                rows.append(
                    (
                        f"weak_{c}:{names[i]}",
                        np.nan,
                        float(bf),
                        float(bf / np.log(2)),
                        int(round(n)),
                        int(round(matches)),
                        int(round(n - matches)),
                        "learned",
                    )
                )
    return pd.DataFrame(rows, columns=list(SIGNAL_WEIGHT_COLUMNS)).astype(
        {
            "signal": "str",
            "prior_confidence": "float64",
            "learned_weight": "float64",
            "match_weight_log2": "float64",
            "n_labelled_pairs": "int64",
            "n_positive": "int64",
            "n_negative": "int64",
            "source": "str",
        }
    )


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
