"""The fixed-confidence baseline rule: priority order, ties, eligibility, signal helpers."""

from __future__ import annotations

import pandas as pd
import pytest

from python_models.baseline import (
    SIGNAL_COLUMNS,
    SIGNAL_CONFIDENCE,
    baseline_pick,
    matched_signals,
    strongest_confidence,
    strongest_signal,
)

CONVERTED_AT = pd.Timestamp("2024-03-31 12:00", tz="UTC")


def candidate(conversion_id: str, click_id: str, hours_before: float, *signals: str, **extra) -> dict:
    row = {
        "conversion_id": conversion_id,
        "click_id": click_id,
        "link_id": f"link-{click_id}",
        "converted_at": CONVERTED_AT,
        "clicked_at": CONVERTED_AT - pd.Timedelta(hours=hours_before),
        "match_probability": 0.5,
        **{column: False for column in SIGNAL_COLUMNS},
    }
    for signal in signals:
        row[f"sig_{signal}"] = True
    row.update(extra)
    return row


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_fixed_confidences_are_ordered_strongest_first() -> None:
    values = list(SIGNAL_CONFIDENCE.values())
    assert values == sorted(values, reverse=True)
    assert SIGNAL_CONFIDENCE == {
        "direct_click": 0.95,
        "user_id": 0.90,
        "session": 0.85,
        "cookie": 0.80,
        "fingerprint": 0.75,
        "email": 0.70,
        "ip_ua": 0.65,
        "ip": 0.50,
    }


@pytest.mark.parametrize(
    ("stronger", "weaker"),
    list(zip(list(SIGNAL_CONFIDENCE)[:-1], list(SIGNAL_CONFIDENCE)[1:], strict=True)),
)
def test_stronger_signal_wins_even_when_older(stronger: str, weaker: str) -> None:
    picks = baseline_pick(frame(candidate("v1", "old", 48, stronger), candidate("v1", "new", 1, weaker, "ip")))
    assert picks["click_id"].tolist() == ["old"]
    assert picks["confidence"].tolist() == [SIGNAL_CONFIDENCE[stronger]]
    assert picks["strongest_signal"].tolist() == [stronger]


def test_ties_go_to_the_latest_click_then_smallest_click_id() -> None:
    picks = baseline_pick(
        frame(
            candidate("v1", "a", 30, "cookie"),
            candidate("v1", "b", 2, "cookie", "ip"),
            candidate("v1", "c", 10, "cookie"),
            candidate("v2", "z", 5, "session"),
            candidate("v2", "y", 5, "session"),
        )
    )
    assert picks.set_index("conversion_id")["click_id"].to_dict() == {"v1": "b", "v2": "y"}
    assert list(picks.columns) == ["conversion_id", "click_id", "link_id", "confidence", "strongest_signal"]


def test_ineligible_candidates_are_ignored() -> None:
    picks = baseline_pick(
        frame(
            candidate("v1", "too-old", 31 * 24, "direct_click"),
            candidate("v1", "after", -1, "user_id"),
            candidate("v1", "bot", 1, "session", is_bot=True),
            candidate("v1", "no-signal", 1),
            candidate("v1", "ok", 5, "ip", is_bot=False),
            candidate("v2", "only-bot", 1, "user_id", is_bot=True),
        )
    )
    assert picks["conversion_id"].tolist() == ["v1"]
    assert picks["click_id"].tolist() == ["ok"]
    assert picks["confidence"].tolist() == [0.50]


def test_lookback_is_configurable() -> None:
    rows = frame(candidate("v1", "old", 40 * 24, "user_id"), candidate("v1", "new", 1, "ip"))
    assert baseline_pick(rows)["click_id"].tolist() == ["new"]
    assert baseline_pick(rows, lookback_days=45)["click_id"].tolist() == ["old"]


def test_signal_helpers_per_pair() -> None:
    rows = frame(
        candidate("v1", "a", 1, "ip", "cookie", "direct_click"),
        candidate("v1", "b", 1),
        candidate("v1", "c", 1, "ip_ua"),
    )
    rows["sig_email"] = rows["sig_email"].astype("boolean")
    rows.loc[1, "sig_email"] = pd.NA
    assert strongest_signal(rows).tolist()[0] == "direct_click"
    assert pd.isna(strongest_signal(rows).iloc[1])
    assert strongest_signal(rows).iloc[2] == "ip_ua"
    assert matched_signals(rows).iloc[0] == "direct_click,cookie,ip"
    assert pd.isna(matched_signals(rows).iloc[1])
    assert matched_signals(rows).iloc[2] == "ip_ua"
    confidence = strongest_confidence(rows)
    assert confidence.iloc[0] == 0.95 and pd.isna(confidence.iloc[1]) and confidence.iloc[2] == 0.65


def test_empty_candidates_and_missing_columns() -> None:
    empty = frame(candidate("v1", "a", 1, "ip")).iloc[0:0]
    assert len(baseline_pick(empty)) == 0
    assert len(matched_signals(empty)) == 0
    with pytest.raises(ValueError, match="sig_ip"):
        baseline_pick(frame(candidate("v1", "a", 1, "ip")).drop(columns="sig_ip"))
