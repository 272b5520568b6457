"""The match model as a small table (written daily, read back hourly) and its per-signal weights."""

from __future__ import annotations

import numpy as np
import pandas as pd

from python_models.confidence.features import _level_names
from python_models.confidence.model import (
    _CALIBRATION_CODES,
    COMPARISONS,
    FORMAT_VERSION,
    SIGNALS,
    TERMS,
    MatchModel,
    WeakModel,
)

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
        ("meta", "prior_reference_popularity", model.prior_reference_popularity),
        ("meta", "prior_half_life_hours", model.prior_half_life_hours),
        ("meta", "prior_base_odds", model.prior_base_odds),
        ("meta", "prior_network_mismatch", model.prior_network_mismatch),
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
        raise ValueError(
            f"match model frame has format_version {version!r}, expected {FORMAT_VERSION}: it was fitted by another "
            "version of this project; the daily re-fit (job daily_refit, or attribution_all) fits a new one"
        )
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
        prior_reference_popularity=meta["prior_reference_popularity"],
        prior_half_life_hours=meta["prior_half_life_hours"],
        prior_base_odds=meta["prior_base_odds"],
        prior_network_mismatch=meta["prior_network_mismatch"],
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
