"""One row per conversion: the last-touch pick and a calibrated confidence that its link is right.

For touches i of one conversion (ordered by time) with match probabilities p_i, the probability that touch i is
the converter's *last* click is

    P(last_i) = p_i * prod_{j later than i} (1 - p_j)

(a later touch that is also the converter's would be the last one instead). A touch can also be overtaken by a
later click that no candidate shows (the converter clicked again in an in-app webview or on another device):
with ``survival(age)`` = P(no such unseen later click | hours since the touch), estimated by the match model
from labelled conversions (:func:`python_models.confidence.fit_unseen_later_click`), P(last_i) is multiplied
by ``survival(age_i)``. The pick is the link with the largest sum of P(last_i) over its touches.

That estimate is read off direct clicks' ages, so for a touch that is a direct click it already holds every later
click of the converter, seen or not: a direct click's product then runs over the later touches linked to it by a
strong signal only (their evidence says far more than the average), not over later weak-only ones (a shared IP or
fingerprint), which would count the same overtaking twice. On the `transfer` family at 20,000 persons (seeds 7 and
11), weak-only touches up to an hour after a direct click were scored 0.19-0.43 on average per world and were the
converter's last click 0.09-0.33 of the time, and with both discounts direct-click picks 10 minutes to a day old
were stated 0.79-0.91 and right 0.92-1.00 (`h_cgnat`, seed 7; BENCHMARKS.md, issue 18).

The stated ``confidence_score`` is that sum for the picked link, with ``stated_survival`` in place of
``survival`` when it is given: the factor orders the links well (an old touch loses to a recent one) while its
level, estimated on labelled conversions, is too pessimistic (see
:data:`python_models.confidence.survival.STATED_STALE_WEIGHT`). ``is_attributed`` holds when the stated
confidence reaches a threshold, and the fact then names the link.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from python_models.attribution import unattributed_share
from python_models.baseline import SIGNAL_COLUMNS, matched_signals, require_columns, strongest_signal
from python_models.confidence.features import linked_pairs

FACT_COLUMNS: tuple[str, ...] = (
    "conversion_id",
    "attributed_link_id",
    "attributed_click_id",
    "candidate_link_id",
    "candidate_click_id",
    "confidence_score",
    "strongest_signal",
    "matched_signals",
    "n_candidate_touches",
    "is_attributed",
    "unattributed_share",
)
# is_attributed holds from this stated confidence up. Chosen on the `transfer` family's tune worlds (20,000 persons,
# seeds 7 and 11) among steps of 0.05 that keep every tune world's last-touch precision >= 0.91 (the 0.90 target
# plus a margin for worlds unlike them), for the best tune F1. With fingerprint and IP as one piece of evidence
# (confidence.scoring.weak_evidence) every step from 0.45 keeps precision >= 0.918, and the median F1 is 0.906 /
# 0.919 at 0.45, 0.909-0.912 / 0.920-0.921 from 0.5 to 0.6: 0.55 stays (BENCHMARKS.md, issue 18).
DEFAULT_CONFIDENCE_THRESHOLD = 0.55
# Every signal flag linked_pairs reads (a direct click, a strong signal, a resolved identity).
FACT_SIGNAL_COLUMNS: tuple[str, ...] = (*SIGNAL_COLUMNS, "sig_identity")
# Keeps log(1 - p) finite for p = 1 (a direct click id): the product then becomes ~0, as it should.
_P_MAX = 1.0 - 1e-12


Survival = Callable[[np.ndarray], np.ndarray]


def _later_log_miss(ordered: pd.DataFrame, p: pd.Series) -> pd.Series:
    """Per touch of ``ordered`` (newest first within a conversion): sum of log(1 - p) over its later touches."""
    log_miss = np.log1p(-p)
    # Exclusive cumulative sum over later touches: the sum includes the touch itself, so subtract it back.
    return log_miss.groupby(ordered["conversion_id"], sort=False).cumsum() - log_miss


def last_click_probabilities(touches: pd.DataFrame, survival: Survival | None = None) -> pd.Series:
    """P(touch is the converter's last click) for every touch (index aligned with ``touches``).

    ``survival`` maps a touch's age in hours (``converted_at - clicked_at``) to the probability that no unseen
    later click by the converter overtakes it; None means every later click is a candidate. With ``survival`` (which
    needs the candidates' signal flags) a direct click is set against its later linked touches only.
    """
    require_columns(touches, ["conversion_id", "clicked_at", "click_id", "match_probability"], "touches")
    if len(touches) == 0:
        return pd.Series([], dtype="float64", index=touches.index)
    ordered = touches.sort_values(["conversion_id", "clicked_at", "click_id"], ascending=[True, False, False])
    p = ordered["match_probability"].astype("float64").clip(0.0, _P_MAX)
    later = _later_log_miss(ordered, p)
    if survival is None:
        return (p * np.exp(later)).reindex(touches.index)
    require_columns(touches, ["converted_at", *FACT_SIGNAL_COLUMNS], "touches")
    # A direct click against its later linked touches only (module docstring).
    linked = pd.Series(linked_pairs(ordered), index=ordered.index)
    direct = ordered["sig_direct_click"].fillna(False).to_numpy(dtype=bool)
    later = later.where(~direct, _later_log_miss(ordered, p.where(linked, 0.0)))
    age_hours = (ordered["converted_at"] - ordered["clicked_at"]).dt.total_seconds().to_numpy() / 3600.0
    p_last = p * np.exp(later) * np.clip(survival(age_hours), 0.0, 1.0)
    return p_last.reindex(touches.index)


def link_confidence(
    touches: pd.DataFrame, survival: Survival | None = None, stated_survival: Survival | None = None
) -> pd.DataFrame:
    """Per conversion and link: ``confidence`` (the ranking, with ``survival``), ``stated`` (the same sum with
    ``stated_survival``, None: with ``survival``) and the link's most likely click."""
    frame = touches.assign(p_last=last_click_probabilities(touches, survival))
    frame["p_stated"] = (
        frame["p_last"] if stated_survival is None else last_click_probabilities(touches, stated_survival)
    )
    per_link = frame.groupby(["conversion_id", "link_id"], sort=False, dropna=False).agg(
        confidence=("p_last", "sum"), stated=("p_stated", "sum")
    )
    best_click = frame.sort_values(["p_last", "clicked_at"], ascending=[False, False]).drop_duplicates(
        ["conversion_id", "link_id"]
    )[["conversion_id", "link_id", "click_id"]]
    return per_link.reset_index().merge(best_click, on=["conversion_id", "link_id"], how="left")


def conversion_facts(
    touches: pd.DataFrame,
    candidates: pd.DataFrame,
    conversion_ids: pd.Series,
    threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
    survival: Survival | None = None,
    stated_survival: Survival | None = None,
) -> pd.DataFrame:
    """The one-row-per-conversion attribution for ``conversion_ids``.

    ``touches`` come from :func:`python_models.attribution.select_touches`; ``candidates`` are the scored
    candidate pairs with their ``sig_*`` flags (for the signals that linked the picked click); ``survival`` as in
    :func:`last_click_probabilities`, used to pick the link; ``stated_survival`` the factor in the stated
    confidence (None: ``survival``; see the module docstring).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    ids = pd.DataFrame({"conversion_id": pd.Series(conversion_ids).drop_duplicates().to_numpy()})
    if len(touches) == 0:
        picks = pd.DataFrame(columns=["conversion_id", "link_id", "click_id", "confidence", "stated"])
        counts = pd.Series(dtype="int64")
        unattributed = pd.Series(dtype="float64")
    else:
        links = link_confidence(touches, survival, stated_survival)
        picks = links.sort_values(["conversion_id", "confidence", "link_id"], ascending=[True, False, True])
        picks = picks.drop_duplicates("conversion_id")
        counts = touches.groupby("conversion_id").size()
        unattributed = unattributed_share(touches)
    picked_pairs = candidates.merge(
        picks[["conversion_id", "click_id"]], on=["conversion_id", "click_id"], how="inner"
    ).drop_duplicates(["conversion_id", "click_id"])
    matched = matched_signals(picked_pairs)
    strongest = strongest_signal(picked_pairs)
    if "sig_identity" in picked_pairs.columns:
        # Same resolved identity is the project's own evidence; the fixed-signal list does not know it.
        same_identity = picked_pairs["sig_identity"].fillna(False).astype(bool)
        matched = matched.where(~same_identity, matched.fillna("").str.cat(["identity"] * len(matched), sep=","))
        matched = matched.str.strip(",")
        strongest = strongest.where(strongest.notna() | ~same_identity, "identity")
    signals = pd.DataFrame(
        {
            "conversion_id": picked_pairs["conversion_id"].to_numpy(),
            "strongest_signal": strongest.to_numpy(),
            "matched_signals": matched.to_numpy(),
        }
    )
    out = ids.merge(picks.rename(columns={"link_id": "candidate_link_id", "click_id": "candidate_click_id"}),
                    on="conversion_id", how="left")  # fmt: skip
    out = out.merge(signals, on="conversion_id", how="left")
    confidence = out["stated"].astype("float64").clip(0.0, 1.0)
    attributed = confidence.fillna(0.0) >= threshold
    out["confidence_score"] = confidence
    out["is_attributed"] = attributed.astype(bool)
    out["attributed_link_id"] = out["candidate_link_id"].where(attributed)
    out["attributed_click_id"] = out["candidate_click_id"].where(attributed)
    out["n_candidate_touches"] = out["conversion_id"].map(counts).fillna(0).astype("int64")
    out["unattributed_share"] = out["conversion_id"].map(unattributed).fillna(1.0).astype("float64")
    return out[list(FACT_COLUMNS)]
