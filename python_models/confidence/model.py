"""The match model's configuration, its fitted form and the signal and comparison constants it is built on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

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
# Optional: the click's rank, newest first, among the conversion's candidates sharing the value (1 when absent).
RANK_COLUMNS: tuple[str, ...] = ("fingerprint_recency_rank", "ip_recency_rank", "ip_ua_recency_rank")

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
    # * log(recency rank among the candidates sharing the fingerprint): later clicks with the same value in between
    "fingerprint_rank": -1,
    "ip_ua": 1,
    "ip": 1,  # any IP match (ip or ip+ua)
    "ip_popularity": -1,
    "ip_gap_decay": -1,
    "ip_rank": -1,  # * log(recency rank among the candidates sharing the IP + user agent, else the IP)
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

# 4: the fingerprint and IP priors combine as Bayes factors over a base odds (version 3 had no such parameters and
# meant a noisy-or of the two).
FORMAT_VERSION = 4
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
    # Fingerprint / IP priors (the prior model, and the label model's weak-only pairs when EM cannot run), in odds:
    # odds(prior) * (reference_popularity / popularity) ** exponent * 0.5 ** (gap_hours / half_life). A stranger's
    # click carrying a value is the newest one before a conversion about as often as the value is common (odds
    # falling as 1 / popularity), and the converter's own weak-only clicks (an in-app click, then the main browser)
    # come minutes before the conversion: on the `transfer` family's tune worlds (seed 7) weak-only pairs were the
    # converter's 42-65 % of the time under 10 minutes, 27-44 % at 10-60 minutes and 2-3 % at 1-6 hours, and
    # weak-only picks under an hour old were right ~0.9 where the old prior (prior * popularity ** -0.5, 72 h
    # half-life) stated them ~0.3. Reference and half-life were chosen on the tune worlds (BENCHMARKS.md, issue 18,
    # "Weak evidence in odds").
    prior_popularity_exponent: float = 1.0
    prior_reference_popularity: float = 128.0
    prior_half_life_hours: float = 0.25
    # The two weak priors are Fellegi-Sunter evidence on one pair, not two families (``scoring.weak_evidence``):
    # each odds above is base_odds * its Bayes factor, so a pair sharing the fingerprint and the IP has
    # odds_fingerprint * odds_ip / base_odds (strangers rarely share both), and a fingerprint-only pair, where the
    # networks differ, has its fingerprint odds times network_mismatch (the converter's own clicks mostly share the
    # network). The gap counts once. Under a noisy-or of the two, weak-only picks sharing both were right 0.98-1.00
    # where stated 0.3-0.8 and fingerprint-only picks stated 0.55 were right 0.3 (tune worlds, 20,000 persons).
    # Both were chosen on the tune worlds (BENCHMARKS.md, issue 18, "Fingerprint and IP as one piece of evidence").
    prior_base_odds: float = 1 / 32
    prior_network_mismatch: float = 0.25
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
        if self.prior_reference_popularity <= 0 or self.prior_half_life_hours <= 0:
            raise ValueError(
                "prior_reference_popularity and prior_half_life_hours must be > 0, got "
                f"{self.prior_reference_popularity} and {self.prior_half_life_hours}"
            )
        if self.prior_base_odds <= 0 or not 0 < self.prior_network_mismatch <= 1:
            raise ValueError(
                "prior_base_odds must be > 0 and prior_network_mismatch in (0, 1], got "
                f"{self.prior_base_odds} and {self.prior_network_mismatch}"
            )
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
    prior_popularity_exponent: float = 1.0
    prior_reference_popularity: float = 128.0
    prior_half_life_hours: float = 0.25
    prior_base_odds: float = 1 / 32
    prior_network_mismatch: float = 0.25
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
        prior_reference_popularity=config.prior_reference_popularity,
        prior_half_life_hours=config.prior_half_life_hours,
        prior_base_odds=config.prior_base_odds,
        prior_network_mismatch=config.prior_network_mismatch,
        signal_counts=dict(signal_counts or {}),
        metrics=dict(metrics or {}),
    )
