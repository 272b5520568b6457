"""Attribution models: published reference cases, confidence weighting, conservation to the cent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from python_models.attribution import (
    MODELS,
    OUTPUT_COLUMNS,
    PATH_SEPARATOR,
    AttributionConfig,
    allocate_cents,
    attribute,
    combine_paths,
    conversion_paths,
    fit_data_driven,
    fit_markov,
    fit_shapley,
    last_touch_pick,
    markov_transitions,
    null_paths,
    null_paths_from_keys,
    reconciled_totals,
    reconciling_weights,
    select_touches,
    shapley_from_rates,
    unattributed_share,
)
from python_models.baseline import SIGNAL_COLUMNS

DAY0 = pd.Timestamp("2024-03-01", tz="UTC")


def touch(conversion_id: str, click_id: str, clicked_at: pd.Timestamp, **values) -> dict:
    """One candidate pair with neutral defaults (probability 1, own identity, cookie match)."""
    row = {
        "conversion_id": conversion_id,
        "click_id": click_id,
        "link_id": f"link-{values.get('channel', 'x')}",
        "campaign_id": "campaign-1",
        "creator_id": "creator-1",
        "channel": "x",
        "converted_at": DAY0 + pd.Timedelta(days=20),
        "clicked_at": clicked_at,
        "revenue": 1.0,
        "click_identity_id": f"identity-{click_id}",
        "match_probability": 1.0,
        **{column: False for column in SIGNAL_COLUMNS},
        "sig_cookie": True,
    }
    row.update(values)
    return row


def conversions_of(candidates: pd.DataFrame, revenue: float | dict = 1.0, extra: tuple = ()) -> pd.DataFrame:
    ids = list(dict.fromkeys([*candidates["conversion_id"], *extra]))
    amounts = [revenue.get(i, 0.0) if isinstance(revenue, dict) else revenue for i in ids]
    return pd.DataFrame({"conversion_id": ids, "converted_at": DAY0 + pd.Timedelta(days=20), "revenue": amounts})


def candidates_from_paths(paths: list[tuple[list[str], int]]) -> pd.DataFrame:
    """One conversion per count, one click per path step (a day apart), channel = step."""
    rows = []
    number = 0
    for path, count in paths:
        for _ in range(count):
            number += 1
            for position, channel in enumerate(path):
                rows.append(
                    touch(
                        f"v{number:03d}",
                        f"v{number:03d}-k{position}",
                        DAY0 + pd.Timedelta(days=position),
                        channel=channel,
                        link_id=f"link-{channel}",
                    )
                )
    return pd.DataFrame(rows)


def paths_frame(rows: list[tuple[list[str], float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": pd.Series([path for path, _, _ in rows], dtype=object),
            "conversions": [conversions for _, conversions, _ in rows],
            "nulls": [nulls for _, _, nulls in rows],
        }
    )


def credit_by_channel(result: pd.DataFrame, candidates: pd.DataFrame, model: str) -> dict[str, float]:
    rows = result.loc[(result["model"] == model) & ~result["is_unattributed"]]
    channels = rows.merge(candidates[["click_id", "channel"]], on="click_id")
    return channels.groupby("channel")["credit_share"].sum().round(4).to_dict()


def random_candidates(seed: int, n_conversions: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random candidates over 4 days of conversions with shared identities, repeats and odd revenues."""
    rng = np.random.default_rng(seed)
    rows = []
    revenue = {}
    channels = ["instagram", "tiktok", "email", "search", "youtube"]
    for number in range(n_conversions):
        conversion_id = f"s{seed}-v{number:03d}"
        converted_at = DAY0 + pd.Timedelta(days=int(rng.integers(10, 14)), minutes=int(rng.integers(0, 1440)))
        revenue[conversion_id] = float(rng.choice([0.0, 19.99, 100.0, 33.33, float(rng.integers(1, 99999)) / 100]))
        for k in range(int(rng.integers(0, 7))):
            channel = str(rng.choice(channels))
            click_at = converted_at - pd.Timedelta(minutes=int(rng.integers(0, 40 * 1440)))
            identity = f"p{int(rng.integers(0, 3))}" if rng.random() < 0.8 else None
            row = touch(
                conversion_id,
                f"{conversion_id}-c{k}",
                click_at,
                channel=channel,
                link_id=f"{channel}-{int(rng.integers(0, 2))}",
                campaign_id=f"campaign-{int(rng.integers(0, 3))}",
                converted_at=converted_at,
                click_identity_id=identity,
                match_probability=float(rng.choice([1.0, rng.random(), 0.01])),
                sig_cookie=bool(rng.random() < 0.5),
                sig_ip=bool(rng.random() < 0.5),
                sig_user_id=bool(rng.random() < 0.2),
            )
            rows.append(row)
            if rng.random() < 0.2:  # an exact repeat a second later
                rows.append(
                    {**row, "click_id": row["click_id"] + "r", "clicked_at": click_at + pd.Timedelta(seconds=1)}
                )
    candidates = pd.DataFrame(rows)
    conversions = pd.DataFrame(
        {"conversion_id": list(revenue), "converted_at": DAY0, "revenue": list(revenue.values())}
    )
    return candidates, conversions


# ----------------------------------------------------------------------------------------------------------
# Reference cases (match_probability = 1, so U = 0)
# ----------------------------------------------------------------------------------------------------------

REFERENCE_PATHS = [(["direct"], 2), (["search", "email"], 3), (["search", "social", "email"], 5)]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("first_touch", {"direct": 2.0, "search": 8.0}),
        ("last_touch", {"direct": 2.0, "email": 8.0}),
        ("linear", {"direct": 2.0, "search": 3.1667, "email": 3.1667, "social": 1.6667}),
        ("position_based", {"direct": 2.0, "search": 3.5, "email": 3.5, "social": 1.0}),
    ],
)
def test_rule_models_reference_paths(model: str, expected: dict[str, float]) -> None:
    candidates = candidates_from_paths(REFERENCE_PATHS)
    result = attribute(candidates, conversions_of(candidates), AttributionConfig(models=(model,)))
    assert credit_by_channel(result, candidates, model) == expected
    assert not result["is_unattributed"].any()


def test_time_decay_reference() -> None:
    converted_at = DAY0 + pd.Timedelta(days=38)
    candidates = pd.DataFrame(
        [
            touch("v1", f"k{day:02d}", DAY0 + pd.Timedelta(days=day), converted_at=converted_at)
            for day in (0, 5, 12, 30, 38)
        ]
    )
    config = AttributionConfig(lookback_days=45, half_life_days=7, models=("time_decay",))
    result = attribute(candidates, conversions_of(candidates, revenue=12000.0), config)
    assert result["credit_revenue"].round(1).tolist() == [175.2, 287.4, 574.9, 3417.0, 7545.4]
    assert result["credit_revenue"].sum() == pytest.approx(12000.0, abs=1e-9)
    assert result["decay_weight"].iloc[-1] == 1.0
    assert result["decay_weight"].iloc[3] == pytest.approx(2 ** (-8 / 7))


def test_shapley_reference_paths() -> None:
    two = fit_shapley(paths_frame([(["a"], 4, 0), (["a", "b"], 6, 0)])).set_index("channel")
    assert two["shapley_value"].round(4).to_dict() == {"a": 7.0, "b": 3.0}
    assert two["weight"].round(4).to_dict() == {"a": 0.7, "b": 0.3}
    four = fit_shapley(paths_frame([(["a", "b", "c", "d"], 10, 3)])).set_index("channel")
    assert four["shapley_value"].round(4).to_dict() == {"a": 2.5, "b": 2.5, "c": 2.5, "d": 2.5}


def test_shapley_from_rates_reference() -> None:
    rates = {
        frozenset("F"): 0.20,
        frozenset("O"): 0.10,
        frozenset("L"): 0.17,
        frozenset("FO"): 0.17,
        frozenset("FL"): 0.30,
        frozenset("LO"): 0.0,
        frozenset("FLO"): 0.06,
    }
    values = shapley_from_rates(rates).set_index("channel")["shapley_value"]
    assert values.round(3).to_dict() == {"F": 0.455, "L": 0.34, "O": 0.205}
    # Efficiency: the values add up to the worth of the grand coalition.
    assert values.sum() == pytest.approx(sum(rates.values()))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shapley_enumeration_equals_closed_form(seed: int) -> None:
    rng = np.random.default_rng(seed)
    channels = list("abcdefgh")
    rows = [
        (list(rng.choice(channels, size=int(rng.integers(1, 5)))), float(rng.integers(0, 20)), 0.0) for _ in range(30)
    ]
    exact = fit_shapley(paths_frame(rows), max_channels=15).set_index("channel")
    closed = fit_shapley(paths_frame(rows), max_channels=2).set_index("channel")
    pd.testing.assert_series_equal(exact["shapley_value"], closed["shapley_value"], atol=1e-9, rtol=0)
    assert exact["shapley_value"].sum() == pytest.approx(sum(c for _, c, _ in rows))


def test_markov_reference() -> None:
    paths = paths_frame(
        [(["google ads"], 2, 0), (["mailing"], 1, 0), (["google ads", "mailing"], 1, 0), (["google ads"], 0, 1)]
    )
    fitted = fit_markov(paths).set_index("channel")
    assert fitted["removal_effect"].round(4).to_dict() == {"google ads": 0.75, "mailing": 0.5}
    assert fitted["attributed_conversions"].round(4).to_dict() == {"google ads": 2.4, "mailing": 1.6}
    assert fitted["weight"].round(4).to_dict() == {"google ads": 0.6, "mailing": 0.4}


def test_markov_transitions_reference() -> None:
    transitions = markov_transitions(paths_frame([(["a", "b"], 3, 1), (["a", "c"], 1, 1)]))
    probabilities = {(row.from_state, row.to_state): round(row.probability, 4) for row in transitions.itertuples()}
    assert probabilities == {
        ("(start)", "a"): 1.0,
        ("a", "b"): 0.6667,
        ("a", "c"): 0.3333,
        ("b", "(conversion)"): 0.75,
        ("b", "(null)"): 0.25,
        ("c", "(conversion)"): 0.5,
        ("c", "(null)"): 0.5,
    }


def _removal_effects_by_resolving(paths: pd.DataFrame) -> dict[str, float]:
    """Brute force: rebuild and solve the chain once per removed channel."""
    transitions = markov_transitions(paths)
    channels = sorted(set(transitions["from_state"]) - {"(start)"})

    def conversion_probability(removed: str | None) -> float:
        states = ["(start)", *[c for c in channels if c != removed]]
        index = {s: i for i, s in enumerate(states)}
        q = np.zeros((len(states), len(states)))
        r = np.zeros(len(states))
        for row in transitions.itertuples():
            if row.from_state not in index:
                continue
            if row.to_state == "(conversion)":
                r[index[row.from_state]] += row.probability
            elif row.to_state in index:
                q[index[row.from_state], index[row.to_state]] += row.probability
        return float(np.linalg.solve(np.eye(len(states)) - q, r)[0])

    base = conversion_probability(None)
    return {c: 1 - conversion_probability(c) / base for c in channels}


@pytest.mark.parametrize("seed", [4, 5])
def test_markov_removal_effects_match_one_solve_per_channel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = [
        (
            list(rng.choice(list("abcde"), size=int(rng.integers(1, 6)))),
            float(rng.integers(0, 5)),
            float(rng.integers(0, 5)),
        )
        for _ in range(40)
    ]
    fitted = fit_markov(paths_frame(rows)).set_index("channel")["removal_effect"].to_dict()
    expected = _removal_effects_by_resolving(paths_frame(rows))
    assert fitted == pytest.approx(expected, abs=1e-10)


def test_markov_and_shapley_credit_inside_a_conversion() -> None:
    candidates = candidates_from_paths([(["google ads", "mailing"], 1)])
    weights = fit_data_driven(
        paths_frame(
            [(["google ads"], 2, 0), (["mailing"], 1, 0), (["google ads", "mailing"], 1, 0), (["google ads"], 0, 1)]
        )
    ).channel_weights
    result = attribute(candidates, conversions_of(candidates, 10.0), AttributionConfig(models=("markov",)), weights)
    # Markov weights 0.6 / 0.4 of 4 conversions: google ads 2.4, mailing 1.6. The single-channel conversions
    # already give google ads 2 and mailing 1, so the shared one splits 0.4 / 0.6 for the totals to add up.
    assert credit_by_channel(result, candidates, "markov") == {"google ads": 0.4, "mailing": 0.6}
    assert result["credit_revenue"].tolist() == [4.0, 6.0]


# ----------------------------------------------------------------------------------------------------------
# Confidence weighting
# ----------------------------------------------------------------------------------------------------------


def test_unattributed_share_counts_each_identity_once() -> None:
    candidates = pd.DataFrame(
        [
            touch("v1", "a1", DAY0 + pd.Timedelta(days=1), click_identity_id="A", match_probability=0.8),
            touch("v1", "a2", DAY0 + pd.Timedelta(days=2), click_identity_id="A", match_probability=0.6),
            touch("v1", "b1", DAY0 + pd.Timedelta(days=3), click_identity_id="B", match_probability=0.5),
            touch("v1", "n1", DAY0 + pd.Timedelta(days=4), click_identity_id=None, match_probability=0.5),
        ]
    )
    touches = select_touches(candidates)
    # Identity A counts once with its best click; a click without identity is its own identity.
    assert unattributed_share(touches).loc["v1"] == pytest.approx((1 - 0.8) * (1 - 0.5) * (1 - 0.5))


def test_confidence_weighted_shares() -> None:
    candidates = pd.DataFrame(
        [
            touch("v1", "a1", DAY0 + pd.Timedelta(days=1), click_identity_id="A", match_probability=0.8),
            touch("v1", "a2", DAY0 + pd.Timedelta(days=2), click_identity_id="A", match_probability=0.6),
            touch("v1", "b1", DAY0 + pd.Timedelta(days=3), click_identity_id="B", match_probability=0.5),
        ]
    )
    result = attribute(candidates, conversions_of(candidates, 100.0))
    u = (1 - 0.8) * (1 - 0.5)
    linear = result.loc[result["model"] == "linear"].set_index("click_id", drop=False)
    assert linear.loc["a1", "credit_share"] == pytest.approx((1 - u) * 0.8 / 1.9)
    assert linear.loc["b1", "credit_share"] == pytest.approx((1 - u) * 0.5 / 1.9)
    assert linear.loc[linear["is_unattributed"], "credit_share"].item() == pytest.approx(u)
    first = result.loc[(result["model"] == "first_touch") & ~result["is_unattributed"]]
    assert first["click_id"].tolist() == ["a1"] and first["credit_share"].item() == pytest.approx(1 - u)
    last = result.loc[(result["model"] == "last_touch") & ~result["is_unattributed"]]
    assert last["click_id"].tolist() == ["b1"] and last["credit_share"].item() == pytest.approx(1 - u)
    totals = result.groupby("model")["credit_share"].sum()
    assert totals.drop("rule_based").to_numpy() == pytest.approx(np.ones(len(MODELS) - 1), abs=1e-12)
    assert totals["rule_based"] == pytest.approx(1.0)
    unattributed = result.loc[result["is_unattributed"]]
    assert unattributed["click_id"].isna().all() and unattributed["link_id"].isna().all()
    assert unattributed["touch_position"].isna().all()


def test_output_columns_and_types() -> None:
    candidates, conversions = random_candidates(seed=11, n_conversions=10)
    result = attribute(candidates, conversions)
    assert list(result.columns) == list(OUTPUT_COLUMNS)
    assert str(result["touch_position"].dtype) == "Int64" and str(result["n_touches"].dtype) == "Int64"
    assert result["is_unattributed"].dtype == bool
    assert (result["credit_share"] > 0).all()
    assert set(result["model"]) == set(MODELS)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_conservation_to_the_cent(seed: int) -> None:
    candidates, conversions = random_candidates(seed)
    result = attribute(candidates, conversions)
    expected_cents = conversions.set_index("conversion_id")["revenue"].mul(100).round().astype("int64")
    cents = (result["credit_revenue"] * 100).round().astype("int64")
    per_conversion = cents.groupby([result["conversion_id"], result["model"]]).sum()
    for model in MODELS:
        got = per_conversion.xs(model, level="model").reindex(expected_cents.index)
        pd.testing.assert_series_equal(got, expected_cents, check_names=False)
    shares = result.groupby(["conversion_id", "model"])["credit_share"].sum()
    assert shares.to_numpy() == pytest.approx(np.ones(len(shares)), abs=1e-9)
    assert len(shares) == len(conversions) * len(MODELS)


def test_allocate_cents_largest_remainder_and_refunds() -> None:
    shares = pd.DataFrame(
        {
            "conversion_id": ["v1"] * 3 + ["v2"] * 3,
            "model": "linear",
            "click_id": ["b", "a", None, "x", "y", "z"],
            "is_unattributed": [False, False, True, False, False, False],
            "credit_share": [1 / 3, 1 / 3, 1 / 3] * 2,
            "cents": [100] * 3 + [-100] * 3,
        }
    )
    # 33.33 each, one cent left: ties go to click_id "a" first, the unattributed row last.
    assert allocate_cents(shares).tolist() == [33, 34, 33, -33, -33, -34]


# ----------------------------------------------------------------------------------------------------------
# Touch selection
# ----------------------------------------------------------------------------------------------------------


def test_repeats_collapse_to_latest_click_with_highest_probability() -> None:
    at = DAY0 + pd.Timedelta(days=3)
    candidates = pd.DataFrame(
        [
            touch("v1", "r1", at, click_identity_id="A", link_id="L1", match_probability=0.3),
            touch("v1", "r2", at + pd.Timedelta(seconds=4), click_identity_id="A", link_id="L1", match_probability=0.9),
            touch("v1", "r3", at + pd.Timedelta(seconds=8), click_identity_id="A", link_id="L1", match_probability=0.4),
            touch("v1", "late", at + pd.Timedelta(seconds=20), click_identity_id="A", link_id="L1"),
            touch("v1", "other-link", at + pd.Timedelta(seconds=1), click_identity_id="A", link_id="L2"),
            touch("v1", "other-id", at + pd.Timedelta(seconds=2), click_identity_id="B", link_id="L1"),
            touch("v1", "no-id-1", at, click_identity_id=None, link_id="L1"),
            touch("v1", "no-id-2", at + pd.Timedelta(seconds=1), click_identity_id=None, link_id="L1"),
        ]
    )
    touches = select_touches(candidates, AttributionConfig(repeat_seconds=5))
    assert sorted(touches["click_id"]) == sorted(["r3", "late", "other-link", "other-id", "no-id-1", "no-id-2"])
    assert touches.set_index("click_id").loc["r3", "match_probability"] == 0.9
    assert touches["touch_position"].tolist() == list(range(1, 7))
    assert (touches["n_touches"] == 6).all()
    assert len(select_touches(candidates, AttributionConfig(repeat_seconds=0))) == len(candidates)


def test_floor_and_lookback() -> None:
    converted_at = DAY0 + pd.Timedelta(days=40)
    candidates = pd.DataFrame(
        [
            touch("v1", "low", DAY0 + pd.Timedelta(days=35), converted_at=converted_at, match_probability=0.04),
            touch("v1", "edge", converted_at - pd.Timedelta(days=30), converted_at=converted_at),
            touch("v1", "old", converted_at - pd.Timedelta(days=30, seconds=1), converted_at=converted_at),
            touch("v1", "after", converted_at + pd.Timedelta(seconds=1), converted_at=converted_at),
            touch("v1", "ok", DAY0 + pd.Timedelta(days=39), converted_at=converted_at, match_probability=0.05),
        ]
    )
    assert select_touches(candidates)["click_id"].tolist() == ["edge", "ok"]
    lower_floor = AttributionConfig(probability_floor=0.01)
    assert select_touches(candidates, lower_floor)["click_id"].tolist() == ["edge", "low", "ok"]


def test_conversions_without_candidates_are_fully_unattributed() -> None:
    candidates = pd.DataFrame([touch("v1", "k1", DAY0 + pd.Timedelta(days=1), match_probability=0.01)])
    conversions = conversions_of(candidates, {"v1": 10.0, "v2": 25.5}, extra=("v2",))
    result = attribute(candidates, conversions)
    assert len(result) == 2 * len(MODELS) + 1  # v1 also has the baseline's pick (cookie signal, floor ignored)
    lonely = result.loc[result["conversion_id"] == "v2"]
    assert lonely["is_unattributed"].all() and (lonely["credit_share"] == 1.0).all()
    assert (lonely["credit_revenue"] == 25.5).all()
    assert lonely["model"].tolist() == list(MODELS)
    v1 = result.loc[(result["conversion_id"] == "v1") & (result["model"] == "rule_based")]
    assert v1["credit_share"].tolist() == pytest.approx([0.8, 0.2])
    assert v1["credit_revenue"].tolist() == [8.0, 2.0]
    assert v1["touch_position"].isna().all()


def test_no_candidates_at_all() -> None:
    candidates = pd.DataFrame([touch("v1", "k1", DAY0)]).iloc[0:0]
    conversions = pd.DataFrame({"conversion_id": ["v1", "v2"], "revenue": [1.0, None]})
    result = attribute(candidates, conversions)
    assert len(result) == 2 * len(MODELS)
    assert result["is_unattributed"].all()
    assert result.groupby("conversion_id")["credit_revenue"].sum().to_dict() == {
        "v1": len(MODELS) * 1.0,
        "v2": 0.0,
    }


def test_position_based_one_and_two_touches() -> None:
    candidates = pd.DataFrame(
        [
            touch("v1", "only", DAY0),
            touch("v2", "first", DAY0),
            touch("v2", "second", DAY0 + pd.Timedelta(days=1)),
        ]
    )
    result = attribute(candidates, conversions_of(candidates), AttributionConfig(models=("position_based",)))
    assert result.set_index("click_id")["credit_share"].to_dict() == {"only": 1.0, "first": 0.5, "second": 0.5}


def test_last_touch_pick() -> None:
    candidates = pd.DataFrame(
        [
            touch("v1", "a", DAY0, match_probability=0.9),
            touch("v1", "b", DAY0 + pd.Timedelta(days=2), match_probability=0.3),
            touch("v2", "c", DAY0),
        ]
    )
    picks = last_touch_pick(select_touches(candidates))
    assert picks.to_dict("list") == {
        "conversion_id": ["v1", "v2"],
        "click_id": ["b", "c"],
        "link_id": ["link-x", "link-x"],
        "match_probability": [0.3, 1.0],
    }


# ----------------------------------------------------------------------------------------------------------
# Grain, fitted weights, partitions
# ----------------------------------------------------------------------------------------------------------


def test_grain_switching() -> None:
    # Two links in the same channel: at link grain they get different fitted weights, at channel grain not.
    fitting = pd.DataFrame(
        [touch(f"f{i}", f"f{i}-a", DAY0, channel="social", link_id="L-strong") for i in range(3)]
        + [touch("g1", "g1-a", DAY0, channel="social", link_id="L-weak")]
        + [touch("g1", "g1-b", DAY0 + pd.Timedelta(days=1), channel="social", link_id="L-strong")]
    )
    target = pd.DataFrame(
        [
            touch("t1", "t1-a", DAY0, channel="social", link_id="L-weak", match_probability=0.5),
            touch("t1", "t1-b", DAY0 + pd.Timedelta(days=1), channel="social", link_id="L-strong"),
        ]
    )
    shares = {}
    for grain in ("channel", "link_id"):
        config = AttributionConfig(grain=grain, models=("shapley",))
        fit = fit_data_driven(conversion_paths(select_touches(fitting, config), grain), config)
        assert set(fit.channel_weights["grain"]) == {grain}
        result = attribute(target, conversions_of(target), config, fit.channel_weights)
        shares[grain] = result.set_index("click_id")["credit_share"].round(4).to_dict()
    # One channel: the conversion goes to it whole, split between its touches by match probability.
    assert shares["channel"] == {"t1-a": 0.3333, "t1-b": 0.6667}
    # Two links: Shapley splits the conversion equally between its distinct links, whatever the probabilities.
    assert shares["link_id"] == {"t1-a": 0.5, "t1-b": 0.5}
    fit = fit_data_driven(conversion_paths(select_touches(fitting), "channel"))
    with pytest.raises(ValueError, match="grain"):
        attribute(target, conversions_of(target), AttributionConfig(grain="link_id"), fit.channel_weights)


def test_unseen_grain_values_fall_back_to_equal_split() -> None:
    candidates = pd.DataFrame(
        [touch("v1", "a", DAY0, channel="new-1"), touch("v1", "b", DAY0 + pd.Timedelta(days=1), channel="new-2")]
    )
    weights = pd.DataFrame({"model": ["markov"], "grain_value": ["old"], "weight": [1.0]})
    result = attribute(candidates, conversions_of(candidates), AttributionConfig(models=("markov",)), weights)
    assert result["credit_share"].tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="shapley"):
        attribute(candidates, conversions_of(candidates), AttributionConfig(models=("shapley",)), weights)


def test_paths_and_null_paths() -> None:
    candidates = candidates_from_paths([(["a", "b"], 2), (["a"], 1)])
    converting = conversion_paths(select_touches(candidates), "channel")
    assert converting.to_dict("list") == {"path": [["a"], ["a", "b"]], "conversions": [1.0, 2.0], "nulls": [0.0, 0.0]}
    clicks = pd.DataFrame(
        {
            "identity_id": ["p1", "p1", "p2", "p3", "p3"],
            "clicked_at": [DAY0, DAY0 + pd.Timedelta(days=1), DAY0, DAY0 - pd.Timedelta(days=60), DAY0],
            "channel": ["a", "b", "a", "b", "a"],
        }
    )
    nulls = null_paths(clicks, "channel")
    assert nulls.to_dict("list") == {"path": [["a"], ["a", "b"]], "conversions": [0.0, 0.0], "nulls": [2.0, 1.0]}
    combined = combine_paths(converting, nulls)
    assert combined.to_dict("list") == {"path": [["a"], ["a", "b"]], "conversions": [1.0, 2.0], "nulls": [2.0, 1.0]}


def test_null_paths_from_engine_keys() -> None:
    keys = pd.Series([f"a{PATH_SEPARATOR}b{PATH_SEPARATOR}", f"a{PATH_SEPARATOR}", f"b{PATH_SEPARATOR}"])
    paths = null_paths_from_keys(keys, pd.Series([2, 1, 4]))
    assert paths.to_dict("list") == {
        "path": [["a"], ["a", "b"], ["b"]],
        "conversions": [0.0, 0.0, 0.0],
        "nulls": [1.0, 2.0, 4.0],
    }
    assert null_paths_from_keys(pd.Series([], dtype=str), pd.Series([], dtype=int)).empty


def test_partitions_give_the_same_rows_as_the_whole() -> None:
    candidates, conversions = random_candidates(seed=7, n_conversions=80)
    config = AttributionConfig()
    paths = conversion_paths(select_touches(candidates, config), config.grain)
    weights = fit_data_driven(paths, config).channel_weights
    whole = attribute(candidates, conversions, config, weights)

    day = candidates.groupby("conversion_id")["converted_at"].first().dt.floor("D")
    conversion_day = conversions["conversion_id"].map(day)
    by_day = []
    for partition in conversion_day.dropna().unique():
        ids = conversions.loc[conversion_day == partition, "conversion_id"]
        by_day.append(
            attribute(
                candidates.loc[candidates["conversion_id"].isin(ids)],
                conversions.loc[conversions["conversion_id"].isin(ids)],
                config,
                weights,
            )
        )
    no_candidates = conversions.loc[conversion_day.isna()]
    by_day.append(attribute(candidates.iloc[0:0], no_candidates, config, weights))
    partitioned = (
        pd.concat(by_day, ignore_index=True).sort_values(["conversion_id"], kind="mergesort").reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(partitioned, whole)

    # Grouped apply per conversion, as on a distributed engine.
    grouped = pd.concat(
        [
            attribute(group, conversions.loc[conversions["conversion_id"] == key], config, weights)
            for key, group in candidates.groupby("conversion_id")
        ],
        ignore_index=True,
    )
    with_candidates = whole.loc[whole["conversion_id"].isin(candidates["conversion_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(grouped, with_candidates)


def test_rejects_unknown_conversions_and_bad_config() -> None:
    candidates = pd.DataFrame([touch("v1", "a", DAY0)])
    with pytest.raises(ValueError, match="conversion_id"):
        attribute(candidates, pd.DataFrame({"conversion_id": ["other"], "revenue": [1.0]}))
    with pytest.raises(ValueError, match="duplicate"):
        attribute(candidates, pd.DataFrame({"conversion_id": ["v1", "v1"], "revenue": [1.0, 1.0]}))
    with pytest.raises(ValueError, match="grain"):
        AttributionConfig(grain="country")
    with pytest.raises(ValueError, match="models"):
        AttributionConfig(models=("linear", "u_shaped"))
    with pytest.raises(ValueError, match="position_weights"):
        AttributionConfig(position_weights=(0.5, 0.5, 0.5))


def test_every_model_shares_sum_to_one_for_each_conversion_in_the_reference() -> None:
    candidates = candidates_from_paths(REFERENCE_PATHS)
    result = attribute(candidates, conversions_of(candidates))
    sums = result.loc[result["model"] != "rule_based"].groupby(["conversion_id", "model"])["credit_share"].sum()
    assert sums.to_numpy() == pytest.approx(np.ones(len(sums)), abs=1e-12)
    assert result["model"].unique().tolist() == list(MODELS)


def test_integer_keys_and_duplicate_index() -> None:
    first = {**touch("v", "k", DAY0, click_identity_id=None, match_probability=0.5)}
    second = {**touch("v", "k", DAY0 + pd.Timedelta(days=1), match_probability=0.9)}
    first.update(conversion_id=1, click_id=10, link_id=5)
    second.update(conversion_id=1, click_id=11, link_id=6)
    candidates = pd.DataFrame([first, second], index=[0, 0])
    conversions = pd.DataFrame({"conversion_id": [1, 2], "revenue": [10.0, 3.0]})
    result = attribute(candidates, conversions, AttributionConfig(models=("linear",)))
    assert str(result["click_id"].dtype) == "Int64" and str(result["conversion_id"].dtype) == "Int64"
    assert result["click_id"].tolist() == [10, 11, pd.NA, pd.NA]
    assert result["credit_revenue"].sum() == pytest.approx(13.0)


# ----------------------------------------------------------------------------------------------------------
# Per-conversion credits that add up to the fit
# ----------------------------------------------------------------------------------------------------------

# ChannelAttribution's example journeys (source and licence: tests/fixtures/channel_attribution/README.md).
CHANNEL_ATTRIBUTION_PATHS = Path(__file__).parent / "fixtures" / "channel_attribution" / "paths.csv.gz"


@pytest.fixture(scope="module")
def channel_attribution() -> pd.DataFrame:
    frame = pd.read_csv(CHANNEL_ATTRIBUTION_PATHS, sep=";")
    return pd.DataFrame(
        {
            "path": frame["path"].str.split(" > "),
            "conversions": frame["total_conversions"].astype("float64"),
            "nulls": frame["total_null"].astype("float64"),
        }
    )


def credits_by_set(paths: pd.DataFrame, channel_weights: pd.DataFrame) -> pd.DataFrame:
    """Credits of ``attribute`` per data-driven model and channel, summed over the conversions of ``paths``.

    Every conversion with the same set of channels gets the same shares (probability 1), so one conversion per
    distinct set is attributed and its shares weighted by the set's conversions: the same sums as attributing
    all of them, without 100,000 touch rows.
    """
    converting = paths.loc[paths["conversions"] > 0]
    sets = converting.groupby(converting["path"].map(lambda path: tuple(sorted(set(path)))))["conversions"].sum()
    rows = [
        touch(f"set{number:05d}", f"set{number:05d}-{channel}", DAY0 + pd.Timedelta(days=k), channel=channel)
        for number, members in enumerate(sets.index)
        for k, channel in enumerate(members)
    ]
    candidates = pd.DataFrame(rows)
    config = AttributionConfig(models=("markov", "shapley"))
    result = attribute(candidates, conversions_of(candidates), config, channel_weights)
    assert result.groupby(["conversion_id", "model"])["credit_share"].sum().sub(1.0).abs().max() < 1e-9
    mass = pd.Series(sets.to_numpy(), index=[f"set{number:05d}" for number in range(len(sets))])
    rows = result.loc[~result["is_unattributed"]].merge(candidates[["click_id", "channel"]], on="click_id")
    rows["credit"] = rows["credit_share"] * rows["conversion_id"].map(mass)
    return rows.groupby(["model", "channel"])["credit"].sum().unstack("model")


def test_shapley_equal_split_reproduces_the_enumerated_values(channel_attribution: pd.DataFrame) -> None:
    """v(S) = conversions whose channel set lies inside S is a sum of unanimity games, one per channel set T,
    with dividend conversions(T); a unanimity game's Shapley value splits its dividend equally among T. So
    phi_c = sum over T containing c of conversions(T) / |T|: each conversion split equally over its distinct
    channels. Checked against the literal enumeration of all 2^12 coalitions on 19,785 conversions."""
    fit = fit_data_driven(channel_attribution)
    assert len(fit.shapley) == 12  # <= shapley_max_channels: the values come from the enumeration
    credits = credits_by_set(channel_attribution, fit.channel_weights)["shapley"]
    values = fit.shapley.set_index("channel")["shapley_value"]
    assert values.sum() == pytest.approx(19_785)
    pd.testing.assert_series_equal(credits.sort_index(), values.sort_index(), check_names=False, rtol=1e-9)


def test_markov_credits_reach_the_closest_totals_on_channel_attribution(channel_attribution: pd.DataFrame) -> None:
    """Markov totals are not all reachable here: 5,742 conversions touched `alpha` alone and can credit nothing
    else, but the fit gives `alpha` 5,345 (and `mi` 1.72 for its 2 lone conversions). The reconciled split puts
    those channels at their forced minimum and every other channel at one common fraction of its fitted total;
    without reconciliation each conversion re-normalises the weights over its own channels instead."""
    fit = fit_data_driven(channel_attribution)
    fitted = fit.markov.set_index("channel")["attributed_conversions"]
    converting = channel_attribution.loc[channel_attribution["conversions"] > 0]
    alone = converting.loc[converting["path"].map(lambda path: len(set(path)) == 1)]
    forced = alone.groupby(alone["path"].map(lambda path: path[0]))["conversions"].sum()
    over = forced.loc[forced > fitted.reindex(forced.index)]
    assert over.to_dict() == {"alpha": 5742.0, "mi": 2.0}

    credits = credits_by_set(channel_attribution, fit.channel_weights)["markov"]
    free = fitted.drop(over.index)
    common = (fitted.sum() - over.sum()) / free.sum()
    assert credits.reindex(over.index).to_numpy() == pytest.approx(over.to_numpy(), rel=1e-4)
    assert (credits.reindex(free.index) / free).to_numpy() == pytest.approx(common, rel=1e-4)
    assert 0.97 < common < 0.975  # the unreachable 397 conversions come off every other channel alike
    assert credits.sum() == pytest.approx(19_785)

    # The per-conversion re-normalisation this replaces: far off even for big channels.
    weights = fit.channel_weights.drop(columns="allocation_weight")
    naive = credits_by_set(channel_attribution, weights)["markov"]
    assert (naive.reindex(free.index) / free).sub(1.0).abs().max() > 0.3


@pytest.mark.parametrize("seed", [6, 7])
def test_reconciling_weights_recover_reachable_totals(seed: int) -> None:
    """Totals made by some allocation are reachable by construction: IPF finds them (and the allocation, which
    is unique up to scale) from any start."""
    rng = np.random.default_rng(seed)
    channels = [f"c{i}" for i in range(9)]
    rows = [
        (list(rng.choice(channels, size=int(rng.integers(1, 5)))), float(rng.integers(1, 30)), 0.0) for _ in range(80)
    ]
    paths = paths_frame(rows)
    truth = pd.Series(rng.uniform(0.05, 1.0, len(channels)), index=channels)
    totals = reconciled_totals(paths, truth)
    found = reconciling_weights(paths, totals, start=pd.Series(1.0, index=channels))
    reached = reconciled_totals(paths, found)
    pd.testing.assert_series_equal(reached, totals, rtol=1e-7)
    seen = found.index
    pd.testing.assert_series_equal(found, truth[seen] / truth[seen].sum(), rtol=1e-5, check_names=False)
    with pytest.raises(ValueError, match="totals"):
        reconciling_weights(paths, totals.drop("c0"))


def test_data_driven_credits_add_up_to_the_fit_with_partial_confidence() -> None:
    """Through attribute on touches with probabilities below 1, repeats and shared identities: each conversion's
    shares still sum to 1 with its unattributed share, and the credits per channel equal the fitted totals
    (weight x conversions, each counting 1 - U) whenever those are reachable."""
    candidates, conversions = random_candidates(11, n_conversions=400)
    config = AttributionConfig(models=("markov", "shapley"))
    touches = select_touches(candidates, config)
    paths = conversion_paths(touches, config.grain)
    fit = fit_data_driven(paths, config)
    result = attribute(candidates, conversions, config, fit.channel_weights)
    assert result.groupby(["conversion_id", "model"])["credit_share"].sum().sub(1.0).abs().max() < 1e-9
    credited = result.loc[~result["is_unattributed"]].merge(candidates[["click_id", "channel"]], on="click_id")
    totals = credited.groupby(["model", "channel"])["credit_share"].sum()
    fitted_conversions = paths["conversions"].sum()
    for model in ("markov", "shapley"):
        expected = fit.channel_weights.loc[fit.channel_weights["model"] == model].set_index("grain_value")["weight"]
        ratio = totals[model].reindex(expected.index) / (expected * fitted_conversions)
        assert ratio.sub(1.0).abs().max() < 0.01, (model, ratio.to_dict())
