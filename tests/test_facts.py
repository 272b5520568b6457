"""The one-row-per-conversion fact: last-touch pick and the confidence that its link is right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from python_models.attribution import select_touches
from python_models.baseline import SIGNAL_COLUMNS
from python_models.facts import FACT_COLUMNS, conversion_facts, last_click_probabilities, link_confidence

T0 = pd.Timestamp("2026-10-10T12:00:00Z")


def candidates(rows: list[tuple]) -> pd.DataFrame:
    """rows: (conversion_id, click_id, link_id, hours_before, probability, identity, signals...)"""
    records = []
    for conversion_id, click_id, link_id, hours, p, identity, *signals in rows:
        record = {
            "conversion_id": conversion_id,
            "click_id": click_id,
            "link_id": link_id,
            "channel": "instagram",
            "converted_at": T0,
            "clicked_at": T0 - pd.Timedelta(hours=hours),
            "click_identity_id": identity,
            "match_probability": p,
            "sig_identity": False,
        }
        record.update({c: c.removeprefix("sig_") in signals for c in SIGNAL_COLUMNS})
        records.append(record)
    return pd.DataFrame(records)


def test_last_click_probability_discounts_earlier_touches_by_later_ones() -> None:
    frame = candidates([("v1", "a", "L1", 10, 0.8, "i1"), ("v1", "b", "L2", 2, 0.5, "i2")])
    p_last = last_click_probabilities(frame)
    assert p_last.tolist() == pytest.approx([0.8 * 0.5, 0.5])


def test_certain_later_touch_leaves_nothing_to_earlier_ones() -> None:
    frame = candidates([("v1", "a", "L1", 10, 0.9, "i1"), ("v1", "b", "L2", 2, 1.0, "i1")])
    assert last_click_probabilities(frame).tolist() == pytest.approx([0.0, 1.0], abs=1e-9)


def test_link_confidence_sums_touches_on_the_same_link() -> None:
    frame = candidates(
        [("v1", "a", "L1", 10, 0.6, "i1"), ("v1", "b", "L2", 5, 0.5, "i2"), ("v1", "c", "L1", 1, 0.4, "i3")]
    )
    conf = link_confidence(frame).set_index("link_id")["confidence"]
    # a: 0.6*0.5*0.6 = 0.18, b: 0.5*0.6 = 0.30, c: 0.4 → L1 = 0.58, L2 = 0.30
    assert conf["L1"] == pytest.approx(0.58)
    assert conf["L2"] == pytest.approx(0.30)


def test_facts_pick_attribute_and_threshold() -> None:
    frame = candidates(
        [
            ("v1", "a", "L1", 30, 0.95, "i1", "cookie", "ip"),
            ("v1", "b", "L2", 3, 0.20, "i2", "ip"),
            ("v2", "c", "L3", 5, 0.30, "i3", "fingerprint"),
        ]
    )
    touches = select_touches(frame)
    facts = conversion_facts(touches, frame, pd.Series(["v1", "v2", "v3"]), threshold=0.5).set_index("conversion_id")
    assert list(facts.reset_index().columns) == list(FACT_COLUMNS)
    assert facts.loc["v1", "attributed_link_id"] == "L1"
    assert facts.loc["v1", "confidence_score"] == pytest.approx(0.95 * 0.8)
    assert facts.loc["v1", "strongest_signal"] == "cookie"
    assert facts.loc["v1", "matched_signals"] == "cookie,ip"
    assert facts.loc["v1", "unattributed_share"] == pytest.approx(0.05 * 0.8)
    assert bool(facts.loc["v1", "is_attributed"]) is True
    # Below the threshold: the candidate is kept for analysis, the attributed link is not claimed.
    assert bool(facts.loc["v2", "is_attributed"]) is False
    assert pd.isna(facts.loc["v2", "attributed_link_id"]) and facts.loc["v2", "candidate_link_id"] == "L3"
    # No candidate at all: fully unattributed.
    assert facts.loc["v3", "n_candidate_touches"] == 0 and facts.loc["v3", "unattributed_share"] == 1.0
    assert pd.isna(facts.loc["v3", "confidence_score"])


def test_identity_only_match_is_named() -> None:
    frame = candidates([("v1", "a", "L1", 3, 0.9, "i1")])
    frame["sig_identity"] = True
    facts = conversion_facts(select_touches(frame), frame, pd.Series(["v1"]))
    assert facts.loc[0, "strongest_signal"] == "identity" and facts.loc[0, "matched_signals"] == "identity"


def test_threshold_is_validated() -> None:
    frame = candidates([("v1", "a", "L1", 3, 0.9, "i1")])
    with pytest.raises(ValueError, match="threshold"):
        conversion_facts(select_touches(frame), frame, pd.Series(["v1"]), threshold=1.5)


def test_unseen_later_clicks_discount_old_touches_and_can_drop_the_attribution() -> None:
    frame = candidates([("v1", "a", "L1", 200, 0.99, "i1", "cookie"), ("v2", "b", "L2", 2, 0.99, "i2", "cookie")])

    def survival(age_hours):
        # Half of all touches older than a day are overtaken by a click no candidate shows.
        return np.where(age_hours > 24, 0.4, 1.0)

    p_last = last_click_probabilities(frame, survival)
    assert p_last.tolist() == pytest.approx([0.99 * 0.4, 0.99])
    facts = conversion_facts(select_touches(frame), frame, pd.Series(["v1", "v2"]), 0.5, survival, survival)
    facts = facts.set_index("conversion_id")
    assert facts.loc["v1", "confidence_score"] == pytest.approx(0.396)
    assert not facts.loc["v1", "is_attributed"] and pd.isna(facts.loc["v1", "attributed_link_id"])
    assert facts.loc["v1", "candidate_link_id"] == "L1"
    assert facts.loc["v2", "is_attributed"] and facts.loc["v2", "attributed_link_id"] == "L2"
    # Without a survival estimate nothing changes.
    assert last_click_probabilities(frame).tolist() == pytest.approx([0.99, 0.99])


def test_the_unseen_later_click_factor_picks_the_link_and_the_stated_confidence_may_use_another() -> None:
    # An older likely touch on L1 and a newer, weaker one on L2: without the factor L1 is more likely the last
    # touch (0.9 * 0.7 = 0.63 against 0.3); the factor (0.4 for touches older than 5 h) ranks L2 first.
    frame = candidates([("v1", "a", "L1", 10, 0.9, "i1", "cookie"), ("v1", "b", "L2", 2, 0.3, "i2", "ip")])

    def survival(age_hours):
        return np.where(age_hours > 5, 0.4, 1.0)

    def halved(age_hours):
        return 1 - 0.5 * (1 - survival(age_hours))

    touches = select_touches(frame)
    plain = conversion_facts(touches, frame, pd.Series(["v1"]), 0.5).set_index("conversion_id")
    assert plain.loc["v1", "candidate_link_id"] == "L1"
    assert plain.loc["v1", "confidence_score"] == pytest.approx(0.63)
    ranked = conversion_facts(touches, frame, pd.Series(["v1"]), 0.5, survival).set_index("conversion_id")
    assert ranked.loc["v1", "candidate_link_id"] == "L2"
    assert ranked.loc["v1", "confidence_score"] == pytest.approx(0.3)
    stated = conversion_facts(touches, frame, pd.Series(["v1"]), 0.5, survival, halved).set_index("conversion_id")
    assert stated.loc["v1", "candidate_link_id"] == "L2"  # the pick does not move
    assert stated.loc["v1", "confidence_score"] == pytest.approx(0.3)  # its touch is recent: factor 1 either way
    links = link_confidence(touches, survival, halved).set_index("link_id")
    assert links.loc["L1", "confidence"] == pytest.approx(0.63 * 0.4)
    assert links.loc["L1", "stated"] == pytest.approx(0.63 * 0.7)


def test_a_direct_click_is_set_against_later_linked_touches_only_when_unseen_clicks_are_estimated() -> None:
    # v1: a direct click, then a weak-only touch (shared IP) and a touch linked by a cookie; v2: the same without
    # the direct click id. The unseen-later-click estimate (read off direct clicks' ages) already holds every later
    # click of the converter, so the weak-only touch no longer discounts the direct click; it still discounts v2's.
    frame = candidates(
        [
            ("v1", "a", "L1", 3, 0.99, "i1", "direct_click", "cookie"),
            ("v1", "b", "L2", 2, 0.40, "i2", "ip"),
            ("v1", "c", "L3", 1, 0.50, "i3", "cookie"),
            ("v2", "d", "L1", 3, 0.99, "i4", "cookie"),
            ("v2", "e", "L2", 2, 0.40, "i5", "ip"),
        ]
    )

    def survival(age_hours):
        return np.where(age_hours > 2.5, 0.9, 1.0)

    p_last = last_click_probabilities(frame, survival).tolist()
    assert p_last[:3] == pytest.approx([0.99 * 0.5 * 0.9, 0.4 * 0.5, 0.5])
    assert p_last[3:] == pytest.approx([0.99 * 0.6 * 0.9, 0.4])
    # Without the estimate every later touch counts, as before.
    assert last_click_probabilities(frame).tolist()[0] == pytest.approx(0.99 * 0.6 * 0.5)
    with pytest.raises(ValueError, match="sig_identity"):
        last_click_probabilities(frame.drop(columns="sig_identity"), survival)
