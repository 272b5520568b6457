"""Unit tests of lab.evaluation with hand-computed answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from lab.evaluation import (
    baseline_picks,
    bcubed,
    bot_filtering_metrics,
    calibration_metrics,
    calibration_table,
    ece,
    ece_noise_floor,
    evaluate,
    format_report,
    identity_metrics,
    last_touch_metrics,
    linear_truth_credit,
    multi_touch_metrics,
    pair_calibration_metrics,
    project_picks,
    to_jsonable,
    total_variation,
)

# ----------------------------------------------------------------------------------------------------
# A tiny world: c1..c3 attributable, c4 organic
# ----------------------------------------------------------------------------------------------------


def truth_conversions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "conversion_id": ["c1", "c2", "c3", "c4"],
            "person_id": ["p1", "p2", "p3", "p4"],
            "is_organic": [False, False, False, True],
            "true_last_click_id": ["k1", "k2", "k3", None],
            "true_last_link_id": ["L1", "L2", "L1", None],
            "first_touch_link_id": ["L2", "L2", "L1", None],
            "touch_link_ids": ["L2 L1", "L2", "L1", None],
            "touch_click_ids": ["k0 k1", "k2", "k3", None],
        }
    )


def truth_clicks() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "click_id": ["k0", "k1", "k2", "k3", "b1", "b2"],
            "person_id": ["p1", "p1", "p2", "p3", None, None],
            "is_bot": [False, False, False, False, True, True],
            "bot_kind": [None, None, None, None, "crawler", "click_farm"],
        }
    )


def perfect_attribution() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "conversion_id": ["c1", "c2", "c3", "c4"],
            "attributed_link_id": ["L1", "L2", "L1", None],
            "attributed_click_id": ["k1", "k2", "k3", None],
            "confidence_score": [0.9, 0.7, 0.95, None],
            "is_attributed": [True, True, True, False],
        }
    )


def perfect_credits() -> pd.DataFrame:
    rows = [
        ("c1", "linear", "k0", "L2", 0.5, False),
        ("c1", "linear", "k1", "L1", 0.5, False),
        ("c2", "linear", "k2", "L2", 1.0, False),
        ("c3", "linear", "k3", "L1", 1.0, False),
        ("c4", "linear", None, None, 1.0, True),
        ("c1", "rule_based", "k1", "L1", 1.0, False),
        ("c2", "rule_based", "k2", "L2", 1.0, False),
        ("c3", "rule_based", "k3", "L1", 1.0, False),
    ]
    return pd.DataFrame(
        rows, columns=["conversion_id", "model", "click_id", "link_id", "credit_share", "is_unattributed"]
    )


def perfect_baseline() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "conversion_id": ["c1", "c2", "c3"],
            "click_id": ["k1", "k2", "k3"],
            "link_id": ["L1", "L2", "L1"],
            "confidence": [0.95, 0.80, 0.50],
        }
    )


def perfect_identities() -> pd.DataFrame:
    return pd.DataFrame({"click_id": ["k0", "k1", "k2", "k3", "b1"], "identity_id": ["i1", "i1", "i2", "i3", "i9"]})


def perfect_flags() -> pd.DataFrame:
    return pd.DataFrame(
        {"click_id": ["k0", "k1", "k2", "k3", "b1", "b2"], "is_bot": [False, False, False, False, True, True]}
    )


# ----------------------------------------------------------------------------------------------------
# Perfect prediction
# ----------------------------------------------------------------------------------------------------


def test_perfect_prediction_scores_one_everywhere() -> None:
    result = evaluate(
        perfect_attribution(),
        perfect_credits(),
        perfect_baseline(),
        perfect_identities(),
        perfect_flags(),
        truth_clicks(),
        truth_conversions(),
    )
    project, baseline = result["project"], result["baseline"]

    last = project["last_touch"]
    assert (last["precision"], last["recall"], last["f1"]) == (1.0, 1.0, 1.0)
    assert last["accuracy_among_attributable"] == 1.0
    assert (last["attributed"], last["correct"], last["attributable"], last["organic_attributed"]) == (
        3,
        3,
        3,
        0,
    )

    # Every pick is right, so each bin's observed rate is 1 and ECE = mean(1 - confidence).
    assert project["calibration"]["n"] == 3
    assert project["calibration"]["ece"] == pytest.approx((0.1 + 0.3 + 0.05) / 3)
    assert baseline["calibration"]["ece"] == pytest.approx((0.05 + 0.2 + 0.5) / 3)
    assert project["calibration"]["brier"] == pytest.approx((0.01 + 0.09 + 0.0025) / 3)

    assert project["identity"]["precision"] == 1.0 and project["identity"]["recall"] == 1.0
    assert project["identity"]["n"] == 4  # bots are not part of identity resolution
    assert project["bot_filtering"]["precision"] == 1.0 and project["bot_filtering"]["recall"] == 1.0
    assert project["multi_touch"]["mean_one_minus_tv"] == pytest.approx(1.0)
    assert project["multi_touch"]["n_conversions"] == 3

    assert baseline["last_touch"]["f1"] == 1.0
    # rule_based gives c1 all to L1 while the truth splits L1/L2: TV = 0.5 for c1, 0 for c2 and c3.
    assert baseline["multi_touch"]["mean_one_minus_tv"] == pytest.approx((0.5 + 1 + 1) / 3)
    # Without click_cookies and baseline flags: identity not available, bot filtering is "no filtering".
    assert baseline["identity"]["precision"] is None
    assert baseline["bot_filtering"]["recall"] == 0.0
    assert baseline["bot_filtering"]["precision"] is None

    assert result["truth"] == {
        "conversions": 4,
        "attributable_conversions": 3,
        "organic_conversions": 1,
        "clicks": 6,
        "bot_clicks": 2,
    }
    json.dumps(result, allow_nan=False)


def test_cookie_baseline_for_identity() -> None:
    # k0 and k1 belong to p1 but carry different cookies; k2 and k3 share one cookie but are p2 and p3.
    cookies = pd.DataFrame({"click_id": ["k0", "k1", "k2", "k3"], "cookie_id": ["a", "b", "c", "c"]})
    result = evaluate(
        perfect_attribution(),
        perfect_credits(),
        perfect_baseline(),
        perfect_identities(),
        perfect_flags(),
        truth_clicks(),
        truth_conversions(),
        click_cookies=cookies,
    )
    identity = result["baseline"]["identity"]
    assert identity["precision"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert identity["recall"] == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)
    assert identity["method"] == "one identity per cookie"


# ----------------------------------------------------------------------------------------------------
# Empty, all-wrong and organic-only worlds
# ----------------------------------------------------------------------------------------------------


def test_empty_inputs_do_not_crash_and_report_none() -> None:
    empty = pd.DataFrame()
    result = evaluate(empty, empty, empty, empty, empty, empty, empty)
    for side in ("project", "baseline"):
        last = result[side]["last_touch"]
        assert last["attributed"] == 0 and last["attributable"] == 0
        assert last["precision"] is None and last["recall"] is None and last["f1"] is None
        assert result[side]["calibration"]["ece"] is None
        assert result[side]["calibration"]["n"] == 0
        assert len(result[side]["calibration"]["bins"]) == 10
        assert result[side]["bot_filtering"]["precision"] is None
        assert result[side]["multi_touch"]["mean_one_minus_tv"] is None
    assert result["project"]["identity"]["precision"] is None
    json.dumps(result, allow_nan=False)
    assert "n/a" in format_report(result)


def test_empty_frames_with_columns() -> None:
    result = evaluate(
        perfect_attribution().iloc[0:0],
        perfect_credits().iloc[0:0],
        perfect_baseline().iloc[0:0],
        perfect_identities().iloc[0:0],
        perfect_flags().iloc[0:0],
        truth_clicks().iloc[0:0],
        truth_conversions().iloc[0:0],
    )
    assert result["project"]["last_touch"]["n_conversions"] == 0
    json.dumps(result, allow_nan=False)


def test_all_wrong() -> None:
    picks = project_picks(perfect_attribution().assign(attributed_link_id=["L9", "L9", "L9", "L9"], is_attributed=True))
    last = last_touch_metrics(picks, truth_conversions())
    assert (last["precision"], last["recall"], last["f1"]) == (0.0, 0.0, 0.0)
    assert last["attributed"] == 4 and last["correct"] == 0
    assert last["organic_attributed"] == 1 and last["unattributable_attributed"] == 1
    assert last["accuracy_among_attributable"] == 0.0


def test_organic_only_world() -> None:
    truth = pd.DataFrame(
        {
            "conversion_id": ["c1", "c2", "c3"],
            "is_organic": [True, True, True],
            "true_last_link_id": [None, None, None],
            "touch_link_ids": [None, "", None],
        }
    )
    attribution = pd.DataFrame(
        {
            "conversion_id": ["c1", "c2", "c3"],
            "attributed_link_id": ["L1", None, None],
            "confidence_score": [0.8, 0.2, None],
            "is_attributed": [True, False, False],
        }
    )
    last = last_touch_metrics(project_picks(attribution), truth)
    # Any attribution is a false positive; recall has no attributable conversion and is NaN.
    assert last["precision"] == 0.0
    assert math.isnan(last["recall"]) and math.isnan(last["f1"])
    assert last["organic_attributed"] == 1
    assert math.isnan(last["accuracy_among_attributable"])

    nothing = last_touch_metrics(project_picks(attribution.assign(is_attributed=False)), truth)
    assert math.isnan(nothing["precision"])

    calibration = calibration_metrics(project_picks(attribution), truth)
    assert calibration["n"] == 1 and calibration["ece"] == pytest.approx(0.8)

    credits = perfect_credits()
    assert multi_touch_metrics(credits, truth)["n_conversions"] == 0
    assert math.isnan(multi_touch_metrics(credits, truth)["mean_one_minus_tv"])


# ----------------------------------------------------------------------------------------------------
# Last touch details
# ----------------------------------------------------------------------------------------------------


def test_unattributed_pick_counts_for_calibration_and_top_candidate_only() -> None:
    # c2 is not attributed but its best candidate (L2) is named and right; c3 is attributed to the wrong link.
    attribution = perfect_attribution().assign(
        attributed_link_id=["L1", "L2", "L2", None],
        is_attributed=[True, False, True, False],
        confidence_score=[0.9, 0.4, 0.6, 0.1],
    )
    picks = project_picks(attribution)
    last = last_touch_metrics(picks, truth_conversions())
    assert last["attributed"] == 2 and last["correct"] == 1
    assert last["precision"] == 0.5
    assert last["recall"] == pytest.approx(1 / 3)
    assert last["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert last["accuracy_among_attributable"] == pytest.approx(2 / 3)

    calibration = calibration_metrics(picks, truth_conversions())
    # c4 has a confidence but no link: skipped. c1 (0.9, right), c2 (0.4, right), c3 (0.6, wrong).
    assert calibration["n"] == 3
    assert calibration["ece"] == pytest.approx((0.1 + 0.6 + 0.6) / 3)


def test_optional_candidate_link_column() -> None:
    attribution = perfect_attribution().assign(
        attributed_link_id=["L1", None, None, None],
        candidate_link_id=[None, "L2", "L9", None],
        is_attributed=[True, False, False, False],
        confidence_score=[0.9, 0.3, 0.2, None],
    )
    picks = project_picks(attribution)
    assert picks["link_id"].tolist()[:3] == ["L1", "L2", "L9"]
    assert picks["is_attributed"].tolist() == [True, False, False, False]
    last = last_touch_metrics(picks, truth_conversions())
    assert last["attributed"] == 1 and last["accuracy_among_attributable"] == pytest.approx(2 / 3)


def test_identifiers_compare_as_text_and_booleans_parse_from_text() -> None:
    truth = pd.DataFrame(
        {
            "conversion_id": [1, 2, 3],
            "is_organic": ["false", "false", "true"],
            "true_last_link_id": [10.0, 20.0, np.nan],
        }
    )
    baseline = pd.DataFrame(
        {
            "conversion_id": ["1", "2", "3"],
            "click_id": ["a", "b", "c"],
            "link_id": ["10", "21", ""],
            "confidence": 0.5,
        }
    )
    last = last_touch_metrics(baseline_picks(baseline), truth)
    assert (last["attributed"], last["correct"], last["attributable"]) == (2, 1, 2)


def test_predictions_outside_the_truth_are_ignored() -> None:
    baseline = pd.concat(
        [perfect_baseline(), pd.DataFrame({"conversion_id": ["zz"], "link_id": ["L1"], "confidence": [0.9]})]
    )
    last = last_touch_metrics(baseline_picks(baseline), truth_conversions())
    assert last["unmatched_predictions"] == 1 and last["precision"] == 1.0


def test_errors_name_table_column_and_value() -> None:
    with pytest.raises(ValueError, match=r"conversion_attribution: missing required column 'confidence_score'"):
        project_picks(perfect_attribution().drop(columns="confidence_score"))
    with pytest.raises(ValueError, match=r"baseline_pick\.conversion_id: 'c1' appears more than once"):
        baseline_picks(pd.concat([perfect_baseline(), perfect_baseline().head(1)]))
    with pytest.raises(ValueError, match=r"clicks_flagged\.is_bot: 'maybe' is not a boolean"):
        bot_filtering_metrics(pd.DataFrame({"click_id": ["k1"], "is_bot": ["maybe"]}), truth_clicks())


# ----------------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------------


def test_ece_worked_example() -> None:
    p = [0.05, 0.15, 0.15, 0.95, 0.95, 1.0]
    y = [0, 0, 1, 1, 1, 0]
    table = calibration_table(p, y)
    assert table["n"].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 3]
    assert table.loc[1, "observed_rate"] == 0.5
    assert table.loc[9, "mean_predicted"] == pytest.approx((0.95 + 0.95 + 1.0) / 3)
    assert math.isnan(table.loc[4, "mean_predicted"])
    # (1 * 0.05 + 2 * |0.15 - 0.5| + 3 * |0.9667 - 0.6667|) / 6
    assert ece(p, y) == pytest.approx((0.05 + 2 * 0.35 + 3 * 0.3) / 6)


def test_bin_edges_are_left_closed_and_one_is_in_the_last_bin() -> None:
    edges = [k / 10 for k in range(11)]
    table = calibration_table(edges, [1] * len(edges))
    assert table["n"].tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1, 2]
    baseline_levels = [0.95, 0.90, 0.85, 0.80, 0.75, 0.70, 0.65, 0.50]
    table = calibration_table(baseline_levels, [1] * 8)
    assert table["n"].tolist() == [0, 0, 0, 0, 0, 1, 1, 2, 2, 2]


def test_ece_edge_cases() -> None:
    assert math.isnan(ece([], []))
    assert ece([0.3, np.nan], [1, 1]) == pytest.approx(0.7)
    assert ece([1.0, 0.0], [True, False]) == 0.0
    with pytest.raises(ValueError, match="outside"):
        ece([1.2], [1])
    with pytest.raises(ValueError, match="not 0/1"):
        ece([0.2], [2])


def test_ece_noise_floor_is_the_chance_ece_of_a_calibrated_model() -> None:
    # 400 picks stated 0.5 and right half the time by chance: ECE = |successes / 400 - 0.5|, whose mean is
    # 0.5 * sqrt(2 / (pi * 400)) = 0.0199 (the binomial's mean absolute deviation, to within 1 %).
    assert ece_noise_floor(np.full(400, 0.5), draws=2000) == pytest.approx(
        0.5 * math.sqrt(2 / (math.pi * 400)), rel=0.05
    )
    # Certain statements have no noise; more picks, less noise; the draws are seeded.
    assert ece_noise_floor([0.0, 1.0, 1.0]) == 0.0
    assert ece_noise_floor(np.full(4000, 0.7)) < ece_noise_floor(np.full(400, 0.7)) / 2
    assert ece_noise_floor(np.full(400, 0.7)) == ece_noise_floor(np.full(400, 0.7))
    assert math.isnan(ece_noise_floor([]))
    with pytest.raises(ValueError, match="outside"):
        ece_noise_floor([1.2])


# ----------------------------------------------------------------------------------------------------
# Identity resolution
# ----------------------------------------------------------------------------------------------------


def test_bcubed_bagga_baldwin_example() -> None:
    # Bagga & Baldwin (1998): truth {1..5}, {6,7}, {8,9,A,B,C}; response merges the last two entities.
    items = list("123456789ABC")
    truth = ["t1"] * 5 + ["t2"] * 2 + ["t3"] * 5
    merged = ["r1"] * 5 + ["r2"] * 7
    scores = bcubed(merged, truth)
    assert scores["precision"] == pytest.approx(16 / 21)  # 0.76 in the paper
    assert scores["recall"] == 1.0
    assert scores["n"] == len(items)
    # The symmetric case: splitting a true cluster costs recall, not precision.
    swapped = bcubed(truth, merged)
    assert swapped["precision"] == 1.0 and swapped["recall"] == pytest.approx(16 / 21)


def test_bcubed_singletons_and_missing_labels() -> None:
    scores = bcubed([None, None, "a"], ["p", "p", "p"])
    assert scores["precision"] == 1.0
    assert scores["recall"] == pytest.approx(1 / 3)
    assert math.isnan(bcubed([], [])["precision"])


def test_identity_metrics_restricts_to_human_clicks_in_both() -> None:
    clusters = pd.DataFrame({"click_id": ["k0", "k1", "k2", "b1", "zz"], "identity_id": ["i1", "i2", "i1", "i1", "i1"]})
    scores = identity_metrics(clusters, truth_clicks())
    # Scored clicks: k0 (p1, i1), k1 (p1, i2), k2 (p2, i1); k3 missing, b1 bot, zz unknown to the truth.
    assert scores["n"] == 3
    assert scores["precision"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert scores["recall"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert scores["predicted_identities"] == 2 and scores["true_persons"] == 2


# ----------------------------------------------------------------------------------------------------
# Bot filtering
# ----------------------------------------------------------------------------------------------------


def test_bot_filtering_counts() -> None:
    flags = pd.DataFrame(
        {
            "click_id": ["k0", "k1", "k2", "b1", "b2", "b2"],
            "is_bot": [True, False, False, True, False, True],  # b2 listed twice: any True wins
        }
    )
    scores = bot_filtering_metrics(flags, truth_clicks())
    assert scores["n_clicks"] == 5  # k3 is not flagged at all
    assert (scores["flagged"], scores["true_positive"], scores["true_bots"]) == (3, 2, 2)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == 1.0
    assert scores["accuracy"] == pytest.approx(4 / 5)


# ----------------------------------------------------------------------------------------------------
# Multi-touch
# ----------------------------------------------------------------------------------------------------


def test_linear_truth_accumulates_repeated_links() -> None:
    truth = pd.DataFrame(
        {
            "conversion_id": ["c1", "c2", "c3"],
            "true_last_link_id": ["L1", "L5", None],
            "touch_link_ids": ["L1 L2 L1", "", "L7"],
        }
    )
    credit = linear_truth_credit(truth)
    shares = {(row.conversion_id, row.link_id): row.credit_share for row in credit.itertuples()}
    # c2 has no touch list and falls back to its last link; c3 is not attributable.
    assert shares == pytest.approx({("c1", "L1"): 2 / 3, ("c1", "L2"): 1 / 3, ("c2", "L5"): 1.0})


def test_total_variation_worked_example() -> None:
    truth = pd.DataFrame({"conversion_id": ["c1", "c1"], "link_id": ["L1", "L2"], "credit_share": [2 / 3, 1 / 3]})
    predicted = pd.DataFrame(
        {"conversion_id": ["c1", "c1", "c1"], "link_id": ["L1", "L3", ""], "credit_share": [0.5, 0.25, 0.25]}
    )
    # 0.5 * (|0.5 - 2/3| + |0 - 1/3| + 0.25 + 0.25) = 0.5 * (1/6 + 1/3 + 1/2) = 0.5
    assert total_variation(predicted, truth).loc["c1"] == pytest.approx(0.5)


def test_multi_touch_metrics_worked_example() -> None:
    truth = pd.DataFrame(
        {
            "conversion_id": ["c1", "c2", "c3"],
            "true_last_link_id": ["L1", "L4", None],
            "touch_link_ids": ["L1 L2 L1", "L4", None],
        }
    )
    rows = [
        ("c1", "linear", "L1", 0.5, False),
        ("c1", "linear", "L3", 0.25, False),
        ("c1", "linear", None, 0.25, True),
        ("c3", "linear", "L1", 1.0, False),  # organic in the truth: not scored
        ("c1", "rule_based", "L1", 1.0, False),
        ("c2", "rule_based", "L4", 1.0, False),
    ]
    credits = pd.DataFrame(rows, columns=["conversion_id", "model", "link_id", "credit_share", "is_unattributed"])
    linear = multi_touch_metrics(credits, truth, "linear")
    # c1: TV 0.5; c2 has no linear credit at all, so it counts as fully unattributed (TV 1).
    assert linear["n_conversions"] == 2
    assert linear["mean_one_minus_tv"] == pytest.approx((0.5 + 0.0) / 2)
    assert linear["exact_share"] == 0.0
    rule_based = multi_touch_metrics(credits, truth, "rule_based")
    # c1: 0.5 * (1/3 + 1/3) = 1/3; c2 exact.
    assert rule_based["mean_one_minus_tv"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert rule_based["exact_share"] == 0.5
    missing = multi_touch_metrics(credits, truth, "time_decay")
    assert missing["available"] is False and math.isnan(missing["mean_one_minus_tv"])


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------


def test_to_jsonable_unwraps_numpy_and_nan() -> None:
    value = {"a": np.float64("nan"), "b": np.int64(3), "c": [np.bool_(True), float("inf"), 0.5], 1: None}
    assert to_jsonable(value) == {"a": None, "b": 3, "c": [True, None, 0.5], "1": None}
    with pytest.raises(TypeError):
        to_jsonable({"x": object()})


def test_format_report_is_an_aligned_side_by_side_table() -> None:
    result = evaluate(
        perfect_attribution(),
        perfect_credits(),
        perfect_baseline(),
        perfect_identities(),
        perfect_flags(),
        truth_clicks(),
        truth_conversions(),
    )
    report = format_report(result)
    lines = report.splitlines()
    header = lines[0]
    assert header.split() == ["metric", "project", "baseline"]
    precision_line = next(line for line in lines if line.strip().startswith("precision"))
    assert precision_line.split()[-2:] == ["1.0000", "1.0000"]
    # Values are right-aligned under their headers.
    assert precision_line.rstrip().endswith("1.0000") and len(precision_line) == len(header)
    assert "calibration bins" in report
    assert "[0.90, 1.00]" in report
    assert "n/a" in report  # baseline identity is not available without click_cookies


def test_hand_built_picks_are_normalised() -> None:
    picks = pd.DataFrame(
        {
            "conversion_id": ["c1", "c2"],
            "link_id": ["L1", "L9"],
            "is_attributed": ["true", "false"],
            "confidence": [0.9, None],
        }
    )
    last = last_touch_metrics(picks, truth_conversions())
    assert (last["attributed"], last["correct"]) == (1, 1)
    assert calibration_metrics(picks, truth_conversions())["n"] == 1


def test_pair_calibration_worked_example() -> None:
    """A pair is right when the click's person made the conversion; bots never are; unknown ids are counted."""
    pairs = pd.DataFrame(
        {
            "conversion_id": ["c1", "c1", "c1", "c2", "c3", "c9", "c1"],
            "click_id": ["k0", "k1", "b1", "k1", "k3", "k3", "k2"],
            "probability": [0.9, 0.8, 0.3, 0.2, 0.95, 0.5, None],
        }
    )
    result = pair_calibration_metrics(pairs, truth_clicks(), truth_conversions(), n_bins=10)
    # c1-k0 right, c1-k1 right, c1-b1 (bot) wrong, c2-k1 wrong, c3-k3 right; c9 is unknown; no probability: out.
    assert (result["n"], result["n_unknown"]) == (5, 1)
    assert result["observed_rate"] == pytest.approx(3 / 5)
    assert result["mean_probability"] == pytest.approx((0.9 + 0.8 + 0.3 + 0.2 + 0.95) / 5)
    # Bin gaps weighted by pairs: 0.9 and 0.95 share the top bin, both right, so their gaps still add up.
    assert result["ece"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.2 + 0.05) / 5)
    assert result["brier"] == pytest.approx((0.01 + 0.04 + 0.09 + 0.04 + 0.0025) / 5)


def test_pair_calibration_is_reported_beside_the_baseline_when_given() -> None:
    pairs = pd.DataFrame({"conversion_id": ["c1", "c2"], "click_id": ["k1", "k2"], "probability": [0.9, 0.6]})
    args = (perfect_attribution(), perfect_credits(), perfect_baseline(), perfect_identities(), perfect_flags())
    result = evaluate(*args, truth_clicks(), truth_conversions(), pair_scores=pairs, baseline_pair_scores=pairs)
    assert result["project"]["pair_calibration"]["n"] == 2
    assert result["project"]["pair_calibration"]["ece"] == pytest.approx((0.1 + 0.4) / 2)
    assert "[pair calibration]" in format_report(result)
    without = evaluate(*args, truth_clicks(), truth_conversions())
    assert without["project"]["pair_calibration"]["ece"] is None
