"""Features, labels and Fellegi-Sunter comparison levels of candidate pairs (pure numpy over the candidate frame)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from python_models.confidence.model import (
    FINGERPRINT_POPULARITY_EDGES,
    GAP_EDGES_HOURS,
    GAP_LEVELS,
    IP_POPULARITY_EDGES,
    POPULARITY_LEVELS_FP,
    POPULARITY_LEVELS_IP,
    RANK_COLUMNS,
    REQUIRED_COLUMNS,
    SIGNALS,
    TERMS,
)


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


def recency_ranks(candidates: pd.DataFrame) -> dict[str, np.ndarray]:
    """Recency rank (>= 1) of every pair among the conversion's candidates sharing the fingerprint / the IP
    (the IP + user agent rank where the pair shares both: the narrower value); NaN where unknown (no column,
    or the pair does not share the value).

    The rank counts the clicks carrying the value between this click and the conversion: data-derived chance
    agreement, which the popularity of the value only approximates (a fingerprint shared by thousands is still
    good evidence on the one click minutes before the conversion).
    """
    out = {}
    for name in RANK_COLUMNS:
        if name in candidates.columns:
            values = _number(candidates, name, 1.0, np.nan)
        else:
            values = np.full(len(candidates), np.nan)
        out[name] = values
    ip_ua = _flag(candidates, "sig_ip_ua") & ~np.isnan(out["ip_ua_recency_rank"])
    ip_rank = np.where(ip_ua, out["ip_ua_recency_rank"], out["ip_recency_rank"])
    return {"fingerprint": out["fingerprint_recency_rank"], "ip": ip_rank}


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
    rank = recency_ranks(candidates)
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
        "fingerprint_rank": fp * np.log(np.nan_to_num(rank["fingerprint"], nan=1.0)),
        "ip_ua": sig["ip_ua"],
        "ip": ip_any,
        "ip_popularity": ip_any * log_ip,
        "ip_gap_decay": ip_any * log_gap,
        "ip_rank": ip_any * np.log(np.nan_to_num(rank["ip"], nan=1.0)),
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
