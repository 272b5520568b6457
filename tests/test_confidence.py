"""Unit tests for the match-confidence model (python_models.confidence) on simulated candidate pairs."""

from __future__ import annotations

import time
from datetime import date

import numpy as np
import pandas as pd
import pytest

from python_models.calibration import calibration_bins, expected_calibration_error
from python_models.confidence import (
    DEFAULT_PRIORS,
    SIGNAL_WEIGHT_COLUMNS,
    SIGNALS,
    MatchModel,
    MatchModelConfig,
    fit_match_model,
    fit_unseen_later_click,
    fit_window_start,
    labelled_pairs,
    linked_pairs,
    model_from_frame,
    model_to_frame,
    no_unseen_later_click,
    prior_model,
    score_candidates,
    signal_weights,
    stated_no_unseen_later_click,
)
from python_models.confidence.features import _design
from python_models.confidence.model import RANK_COLUMNS, TERMS
from python_models.confidence.scoring import _score_weak, weak_evidence, weak_odds
from python_models.confidence.shift import label_shift, standardised_mean_difference
from python_models.confidence.survival import SURVIVAL_MIN_CONVERSIONS, stale_share_bound
from python_models.confidence.weak_pairs import _fit_weak_model

SIGNAL_COLUMNS = [f"sig_{s}" for s in SIGNALS]


def simulate_candidates(n_conversions: int, seed: int) -> pd.DataFrame:
    """Candidate pairs with a ground-truth column ``is_match``, shaped like the synthetic world's.

    True clicks come from the converter's converting browser jar (cookie shared, identity linked, the direct click
    id often carried), another jar of the same phone (in-app webview -> main browser: IP shared, often minutes
    before the conversion, rarely linked by the identity graph), or another device (home IP, sometimes logged in).
    Strangers share a carrier-NAT IP, a popular phone fingerprint or a household IP. As in the world, a direct
    click id only survives inside the converting jar, so the labels never see the cross-jar matches.
    """
    rng = np.random.default_rng(seed)
    n_true = np.where(rng.random(n_conversions) < 0.8, 1 + rng.poisson(0.8, n_conversions), 0)
    conv = np.repeat(np.arange(n_conversions), n_true)
    m = len(conv)

    def u(k: int) -> np.ndarray:
        return rng.random(k)

    kind = rng.choice(3, size=m, p=[0.5, 0.3, 0.2])  # same jar, other jar of the phone, other device
    same, other_jar, other_dev = kind == 0, kind == 1, kind == 2
    quick = (other_jar & (u(m) < 0.6)) | (same & (u(m) < 0.5))
    gap_h = np.where(quick, np.exp(rng.normal(np.log(0.08), 0.8, m)), np.minimum(rng.exponential(72.0, m), 719.0))
    ip_pop = np.where(
        (u(m) < 0.35) & ~other_dev, np.ceil(np.exp(rng.normal(4.5, 0.6, m))), np.ceil(np.exp(rng.normal(0.4, 0.5, m)))
    )
    p_ip = np.where(same, np.where(gap_h < 2, 0.9, 0.5), np.where(other_jar, np.where(gap_h < 1, 0.9, 0.45), 0.45))
    ip = u(m) < p_ip
    fp = same | (other_jar & (u(m) < 0.3))
    user = (u(m) < 0.3) & np.where(same, u(m) < 0.3, other_dev & (u(m) < 0.5))
    email = np.where(same, u(m) < 0.1, other_dev & (u(m) < 0.2))
    true = pd.DataFrame(
        {
            "conversion": conv,
            "sig_user_id": user,
            "sig_session": same & (gap_h < 0.5) & (u(m) < 0.8),
            "sig_cookie": same,
            "sig_fingerprint": fp,
            "sig_email": email,
            "sig_ip_ua": ip & same,
            "sig_ip": ip,
            "sig_identity": same | (other_jar & (u(m) < 0.15)) | (other_dev & (user | email | (u(m) < 0.15))),
            "gap_seconds": gap_h * 3600,
            "fingerprint_popularity": np.where(fp, np.ceil(np.exp(rng.normal(2.5, 1.5, m))), 1.0),
            "ip_popularity": np.where(ip, ip_pop, 1.0),
            "ua_family_match": same | other_jar | (u(m) < 0.3),
            "inapp_to_main_switch": other_jar,
            "kind": kind,
            "is_match": True,
        }
    )
    # The direct click: the converter's latest click in the converting jar, when its click id survived.
    by_gap = true.sort_values(["conversion", "gap_seconds"])
    latest_same = by_gap.loc[by_gap["kind"] == 0].drop_duplicates("conversion").index
    true["sig_direct_click"] = true.index.isin(latest_same[rng.random(len(latest_same)) < 0.7])

    fconv = np.repeat(np.arange(n_conversions), rng.poisson(6, n_conversions))
    k = len(fconv)
    fkind = rng.choice(3, size=k, p=[0.5, 0.3, 0.2])  # carrier NAT, popular fingerprint, household
    carrier, popular, house = fkind == 0, fkind == 1, fkind == 2
    f_ip = carrier | house | (popular & (u(k) < 0.05))
    f_fp = popular | (carrier & (u(k) < 0.1)) | (house & (u(k) < 0.2))
    local = np.ceil(np.exp(rng.normal(1.0, 0.6, k)))
    false = pd.DataFrame(
        {
            "conversion": fconv,
            "sig_user_id": False,
            "sig_session": False,
            "sig_cookie": False,
            "sig_fingerprint": f_fp,
            "sig_email": False,
            "sig_ip_ua": f_ip & (u(k) < np.where(house, 0.3, 0.15)),
            "sig_ip": f_ip,
            "sig_identity": False,
            "gap_seconds": u(k) * 720 * 3600,
            "fingerprint_popularity": np.where(f_fp, np.where(house, local, np.ceil(np.exp(rng.normal(5, 1, k)))), 1.0),
            "ip_popularity": np.where(f_ip, np.where(house, local, np.ceil(np.exp(rng.normal(4.5, 0.6, k)))), 1.0),
            "ua_family_match": u(k) < 0.6,
            "inapp_to_main_switch": u(k) < 0.1,
            "kind": -1 - fkind,
            "is_match": False,
            "sig_direct_click": False,
        }
    )
    frame = pd.concat([true, false], ignore_index=True)
    frame = frame.loc[frame[SIGNAL_COLUMNS].any(axis=1)].copy()
    frame["conversion_id"] = "cv" + frame["conversion"].astype(str) + f"_{seed}"
    frame["click_id"] = [f"ck{seed}_{i}" for i in range(len(frame))]
    frame["conversion_has_direct_click"] = frame.groupby("conversion")["sig_direct_click"].transform("any")
    return frame.drop(columns=["conversion"]).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def auc(p: np.ndarray, y: np.ndarray) -> float:
    ranks = pd.Series(p).rank().to_numpy()
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top1_accuracy(candidates: pd.DataFrame, p: np.ndarray) -> float:
    """Share of conversions (with a true candidate) whose highest-p candidate is a true one (ties: latest)."""
    frame = candidates.assign(p=p).sort_values(["conversion_id", "p", "gap_seconds"], ascending=[True, False, True])
    top = frame.drop_duplicates("conversion_id")
    has_true = candidates.groupby("conversion_id")["is_match"].any()
    return float(top.loc[top["conversion_id"].map(has_true), "is_match"].mean())


def strongest_fixed_signal(candidates: pd.DataFrame) -> np.ndarray:
    """The old app's confidence: the maximum fixed prior over the shared signals."""
    fixed = [s for s in SIGNALS if s != "identity"]
    return np.max([candidates[f"sig_{s}"].to_numpy() * DEFAULT_PRIORS[s] for s in fixed], axis=0)


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    return simulate_candidates(3000, seed=1), simulate_candidates(3000, seed=2)


# This simplified world is smaller than the volume the weak-only EM needs by default, but its comparisons are
# independent given the match status, so EM can be tested on it.
EM = MatchModelConfig(weak_min_pairs=1000)


@pytest.fixture(scope="module")
def model(world: tuple[pd.DataFrame, pd.DataFrame]) -> MatchModel:
    return fit_match_model(world[0], EM)


def pair(**values: object) -> dict[str, object]:
    """One candidate row: nothing shared unless given."""
    row: dict[str, object] = {
        "conversion_id": "cv",
        "gap_seconds": 3600.0,
        "fingerprint_popularity": 1.0,
        "ip_popularity": 1.0,
        "ua_family_match": False,
        "inapp_to_main_switch": False,
        "conversion_has_direct_click": False,
    }
    row.update({c: False for c in SIGNAL_COLUMNS})
    row.update(values)
    return row


# ----------------------------------------------------------------------------------------------------------------
# fit_match_model / score_candidates
# ----------------------------------------------------------------------------------------------------------------


def test_learned_model_beats_priors_and_baseline_on_a_held_out_world(
    world: tuple[pd.DataFrame, pd.DataFrame], model: MatchModel
) -> None:
    _, test = world
    y = test["is_match"].to_numpy()
    assert model.source == "learned" and not model.used_priors
    assert model.weak is not None, model.metrics
    learned = score_candidates(test, model)
    priors = score_candidates(test, prior_model())
    baseline = strongest_fixed_signal(test)
    assert ((learned >= 0) & (learned <= 1)).all()
    assert expected_calibration_error(learned, y) <= 0.05
    assert expected_calibration_error(learned, y) < expected_calibration_error(priors, y)
    assert log_loss(learned, y) < log_loss(priors, y)
    assert auc(learned, y) > auc(priors, y)
    assert top1_accuracy(test, learned) >= top1_accuracy(test, baseline) + 0.05
    assert top1_accuracy(test, learned) >= top1_accuracy(test, priors)


def test_weak_only_pairs_get_the_em_model_because_labels_cannot_see_them(
    world: tuple[pd.DataFrame, pd.DataFrame], model: MatchModel
) -> None:
    _, test = world
    weak = ~linked_pairs(test)
    y = test["is_match"].to_numpy()
    # Identity-based labels call every weak-only pair a non-match, yet some are the converter's other jar.
    assert y[weak].mean() > 0.05
    p = score_candidates(test, model)
    assert expected_calibration_error(p[weak], y[weak]) <= 0.05
    # In-app -> main browser handoffs minutes before the conversion are recognised.
    handoff = weak & test["inapp_to_main_switch"].to_numpy() & (test["gap_seconds"].to_numpy() < 600)
    assert p[handoff].mean() > 0.5 and y[handoff].mean() > 0.5
    assert 0 < model.metrics["weak_lambda"] < 0.5


def test_direct_click_pairs_are_near_certain(world: tuple[pd.DataFrame, pd.DataFrame], model: MatchModel) -> None:
    _, test = world
    direct = test["sig_direct_click"].to_numpy()
    assert direct.any()
    assert (score_candidates(test, model)[direct] >= 0.995).all()
    assert (score_candidates(test, prior_model())[direct] >= 0.995).all()


def test_fallback_to_priors_under_the_minimum_of_labels() -> None:
    small = simulate_candidates(300, seed=5)
    fitted = fit_match_model(small)
    assert fitted.source == "prior" and fitted.used_priors
    assert fitted.n_labelled_conversions < MatchModelConfig().min_labelled_conversions
    np.testing.assert_allclose(score_candidates(small, fitted), score_candidates(small, prior_model()))
    assert set(signal_weights(fitted)["source"]) == {"prior"}
    # The same data learns once the documented minimum is lowered.
    assert fit_match_model(small, MatchModelConfig(min_labelled_conversions=50)).source == "learned"


def test_weak_odds_are_the_prior_in_odds_scaled_by_popularity() -> None:
    model = MatchModel(source="prior", coefficients={}, calibration="none", prior_reference_popularity=100.0)
    popularity = np.array([100.0, 200.0, 25.0, 1.0])
    # Prior 0.75: odds 3 at the reference popularity; a rarer value raises the odds, never the probability past 1.
    np.testing.assert_allclose(weak_odds(model, 0.75, popularity), 3.0 * np.array([1.0, 0.5, 4.0, 100.0]))
    assert weak_odds(model, 0.0, popularity).tolist() == [0.0] * 4


def test_weak_evidence_multiplies_fingerprint_and_network_bayes_factors_and_decays_once() -> None:
    model = MatchModel(
        source="prior",
        coefficients={},
        calibration="none",
        prior_reference_popularity=100.0,
        prior_half_life_hours=0.5,
        prior_base_odds=0.25,
        prior_network_mismatch=0.5,
        priors={**MatchModelConfig().priors, "fingerprint": 0.75, "ip": 0.5, "ip_ua": 0.8},
    )
    shared = {"fingerprint_popularity": 25.0, "ip_popularity": 100.0, "gap_seconds": 0.0}
    frame = pd.DataFrame(
        [
            pair(sig_fingerprint=True, **shared),  # odds 3 * 4, networks differ: * 0.5
            pair(sig_ip=True, **shared),  # odds 1
            pair(sig_ip=True, sig_ip_ua=True, **shared),  # IP + user agent, the stronger: odds 4
            pair(sig_fingerprint=True, sig_ip=True, **shared),  # 12 * 1 / 0.25
            pair(sig_fingerprint=True, sig_ip=True, **{**shared, "gap_seconds": 1800.0}),  # half an hour: halved once
            pair(sig_cookie=True, **shared),  # no weak evidence
        ]
    )
    odds = np.array([6.0, 1.0, 4.0, 48.0, 24.0, 0.0])
    np.testing.assert_allclose(weak_evidence(model, frame), odds / (1 + odds))
    # The prior model: weak evidence is device evidence beside the cookie (the larger), noisy-or with the rest.
    both = pd.DataFrame([pair(sig_cookie=True, sig_fingerprint=True, sig_ip=True, sig_email=True, **shared)])
    assert score_candidates(both, model)[0] == pytest.approx(1 - (1 - 48 / 49) * (1 - model.priors["email"]))
    with pytest.raises(ValueError, match="prior_base_odds"):
        MatchModelConfig(prior_base_odds=0.0)
    with pytest.raises(ValueError, match="prior_network_mismatch"):
        MatchModelConfig(prior_network_mismatch=1.5)
    with pytest.raises(ValueError, match="prior_reference_popularity"):
        MatchModelConfig(prior_reference_popularity=0.0)


def test_the_priors_model_gets_the_unseen_later_click_estimate_when_labels_allow_it() -> None:
    # 120 labelled conversions: too few to learn weights, enough to say how often a direct click was overtaken.
    frame = jar_world(120, stale_share=0.3)
    fitted = fit_match_model(frame)
    assert fitted.used_priors and fitted.n_labelled_conversions < MatchModelConfig().min_labelled_conversions
    assert fitted.metrics["survival_used"] == 1.0 and len(fitted.survival) > 3
    age = np.array([0.1, 500.0])
    assert no_unseen_later_click(fitted, age)[0] > no_unseen_later_click(fitted, age)[1]
    # Pair scores stay the priors'; only the last-touch statement reads the estimate.
    np.testing.assert_allclose(score_candidates(frame, fitted), score_candidates(frame, prior_model()))
    # Fewer labelled conversions than the estimate needs: the plain priors.
    few = fit_match_model(jar_world(SURVIVAL_MIN_CONVERSIONS - 10, stale_share=0.3))
    assert few.used_priors and few.survival == ()


def test_single_class_labels_fall_back_to_priors() -> None:
    frame = simulate_candidates(1500, seed=6)
    frame = frame.loc[frame["sig_identity"] | frame["sig_direct_click"]]  # every labelled pair positive
    fitted = fit_match_model(frame)
    assert fitted.used_priors and fitted.metrics["single_class_split"] == 1.0


def test_weak_model_needs_volume_and_otherwise_weak_pairs_get_the_priors(
    world: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = world
    fitted = fit_match_model(train, MatchModelConfig(weak_min_pairs=10**9))
    assert fitted.source == "learned" and fitted.weak is None
    weak = ~linked_pairs(test)
    np.testing.assert_allclose(score_candidates(test, fitted)[weak], score_candidates(test, prior_model())[weak])


def test_below_the_volume_em_needs_weak_only_pairs_get_the_priors_and_the_model_says_so(
    world: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, test = world
    fitted = fit_match_model(train)
    assert fitted.source == "learned" and fitted.weak is None
    assert fitted.metrics["weak_model_used"] == 0.0
    assert 0 < fitted.metrics["weak_pairs"] == (~linked_pairs(train)).sum() < MatchModelConfig().weak_min_pairs
    weak = ~linked_pairs(test)
    learned = score_candidates(test, fitted)
    np.testing.assert_allclose(learned[weak], score_candidates(test, prior_model())[weak])
    assert not signal_weights(fitted)["signal"].str.startswith("weak_").any()
    # The linked pairs are still learned from the labels: better than the priors and the old rule.
    y = test["is_match"].to_numpy()
    assert expected_calibration_error(learned, y) <= 0.05
    assert log_loss(learned, y) < log_loss(score_candidates(test, prior_model()), y)
    assert top1_accuracy(test, learned) >= top1_accuracy(test, strongest_fixed_signal(test)) + 0.05
    # A round trip keeps the choice.
    assert model_from_frame(model_to_frame(fitted)).weak is None


def test_monotonic_sanity(model: MatchModel) -> None:
    for m in (model, prior_model()):
        ladder = pd.DataFrame(
            [
                pair(sig_cookie=True, sig_fingerprint=True),
                pair(sig_cookie=True, sig_fingerprint=True, sig_identity=True),
                pair(sig_cookie=True, sig_fingerprint=True, sig_identity=True, sig_session=True),
                pair(sig_cookie=True, sig_fingerprint=True, sig_identity=True, sig_session=True, sig_user_id=True),
            ]
        )
        p = score_candidates(ladder, m)
        assert (np.diff(p) >= 0).all() and p[-1] > p[0], p
        # Term-frequency adjustment: a fingerprint shared by 500 cookies is weaker than one shared by 2.
        fingerprints = pd.DataFrame(
            [pair(sig_fingerprint=True, fingerprint_popularity=n, gap_seconds=7200.0) for n in (2, 500)]
        )
        rare, popular = score_candidates(fingerprints, m)
        assert rare > popular
        # IP evidence decays with the time gap (and with the IP's popularity).
        ips = pd.DataFrame(
            [
                pair(sig_ip=True, ip_popularity=2, gap_seconds=300.0),
                pair(sig_ip=True, ip_popularity=2, gap_seconds=3 * 86400.0),
                pair(sig_ip=True, ip_popularity=200, gap_seconds=3 * 86400.0),
            ]
        )
        recent, old, crowded = score_candidates(ips, m)
        assert recent > old >= crowded


def test_fit_is_deterministic(world: tuple[pd.DataFrame, pd.DataFrame], model: MatchModel) -> None:
    train, _ = world
    again = fit_match_model(train.sample(frac=1.0, random_state=11), EM)
    pd.testing.assert_frame_equal(model_to_frame(model), model_to_frame(again), atol=1e-6, check_exact=False)


def test_holdout_frame_and_metrics(model: MatchModel) -> None:
    holdout = model.holdout
    assert holdout is not None
    assert list(holdout.columns) == ["conversion_id", "region", "probability", "label"]
    assert set(holdout["region"]) <= {"linked", "weak"}
    assert len(holdout) == model.metrics["n_holdout_pairs"]
    assert holdout["probability"].between(0, 1).all()
    assert expected_calibration_error(holdout["probability"].to_numpy(), holdout["label"].to_numpy()) <= 0.1
    assert model.metrics["holdout_log_loss"] <= model.metrics["holdout_log_loss_priors"]
    assert model.n_labelled_conversions == model.metrics["n_labelled_conversions"] >= 200


def test_labelled_pairs_use_the_direct_clicks_identity() -> None:
    frame = pd.DataFrame(
        [
            pair(conversion_id="a", sig_direct_click=True, sig_cookie=True, click_identity_id="i1"),
            pair(conversion_id="a", sig_ip=True, click_identity_id="i1"),  # same identity as the direct click
            pair(conversion_id="a", sig_ip=True, sig_identity=True, click_identity_id="i2"),  # another identity
            pair(conversion_id="b", sig_direct_click=True, click_identity_id="i3"),  # two direct pairs: ambiguous
            pair(conversion_id="b", sig_direct_click=True, click_identity_id="i4"),
            pair(conversion_id="c", sig_cookie=True, click_identity_id="i5"),  # no direct click: unlabelled
        ]
    ).assign(conversion_has_direct_click=[True, True, True, True, True, False])
    labelled, label = labelled_pairs(frame)
    assert labelled.tolist() == [True, True, True, False, False, False]
    assert label[:3].tolist() == [True, True, False]
    # Without click_identity_id, sig_identity is the proxy.
    labelled, label = labelled_pairs(frame.drop(columns=["click_identity_id"]))
    assert label[:3].tolist() == [True, False, True]


def test_input_errors_name_the_column() -> None:
    frame = pd.DataFrame([pair(sig_ip=True)])
    with pytest.raises(KeyError, match="sig_identity"):
        score_candidates(frame.drop(columns=["sig_identity"]), prior_model())
    with pytest.raises(ValueError, match="gap_seconds"):
        score_candidates(frame.assign(gap_seconds="soon"), prior_model())
    # A click a few seconds after the conversion (clock-skew tolerance) counts as gap 0.
    skewed = score_candidates(frame.assign(gap_seconds=-5.0), prior_model())
    assert skewed == pytest.approx(score_candidates(frame.assign(gap_seconds=0.0), prior_model()))
    with pytest.raises(ValueError, match="conversion_id"):
        labelled_pairs(frame.assign(conversion_id=None))
    with pytest.raises(ValueError, match="holdout_fraction"):
        MatchModelConfig(holdout_fraction=1.5)


# ----------------------------------------------------------------------------------------------------------------
# Persistence and reporting
# ----------------------------------------------------------------------------------------------------------------


def test_model_frame_round_trip(world: tuple[pd.DataFrame, pd.DataFrame], model: MatchModel) -> None:
    _, test = world
    for m in (model, prior_model(), fit_match_model(world[0], MatchModelConfig(calibration="isotonic"))):
        frame = model_to_frame(m)
        assert list(frame.columns) == ["parameter", "signal", "value"]
        assert not frame.duplicated(["parameter", "signal"]).any()
        back = model_from_frame(frame.sample(frac=1.0, random_state=3))
        np.testing.assert_allclose(score_candidates(test, back), score_candidates(test, m))
        assert back.source == m.source and back.calibration == m.calibration
        assert back.signal_counts == m.signal_counts
        np.testing.assert_allclose(back.survival, m.survival)
        np.testing.assert_allclose(back.survival_hours, m.survival_hours)
        pd.testing.assert_frame_equal(signal_weights(back), signal_weights(m))
    bad = model_to_frame(model)
    bad.loc[(bad["parameter"] == "meta") & (bad["signal"] == "format_version"), "value"] = 99.0
    with pytest.raises(ValueError, match="format_version"):
        model_from_frame(bad)


def test_signal_weights_explain_the_model(model: MatchModel) -> None:
    weights = signal_weights(model)
    assert list(weights.columns) == list(SIGNAL_WEIGHT_COLUMNS)
    assert weights["signal"].tolist()[: len(SIGNALS)] == list(SIGNALS)
    assert weights["signal"].is_unique
    direct = weights.set_index("signal").loc["direct_click"]
    assert direct["source"] == "prior" and direct["match_weight_log2"] == pytest.approx(np.log2(0.995 / 0.005))
    signals = weights.iloc[1 : len(SIGNALS)]
    assert (signals["source"] == "learned").all()
    assert (signals["n_positive"] + signals["n_negative"] == signals["n_labelled_pairs"]).all()
    assert (signals["prior_confidence"] == [DEFAULT_PRIORS[s] for s in SIGNALS[1:]]).all()
    weak_rows = weights.loc[weights["signal"].str.startswith("weak_")]
    assert len(weak_rows) > 0 and weak_rows["prior_confidence"].isna().all()
    assert weights.set_index("signal").loc["weak_gap:<10m", "match_weight_log2"] > 0


# ----------------------------------------------------------------------------------------------------------------
# calibration_bins / expected_calibration_error
# ----------------------------------------------------------------------------------------------------------------


def test_calibration_bins_worked_example() -> None:
    p = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    y = np.array([0, 0, 1, 1, 1])
    bins = calibration_bins(p, y, n_bins=10)
    assert list(bins.columns) == ["bin", "lower", "upper", "n", "mean_predicted", "observed_rate"]
    assert bins["n"].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins.loc[1, "mean_predicted"] == pytest.approx(0.15) and bins.loc[1, "observed_rate"] == 0.5
    assert np.isnan(bins.loc[2, "mean_predicted"])
    assert bins.loc[9, "upper"] == 1.0 and bins.loc[9, "mean_predicted"] == pytest.approx(0.975)
    # ECE = 1/5 * 0.05 + 2/5 * 0.35 + 2/5 * 0.025
    assert expected_calibration_error(p, y) == pytest.approx(0.01 + 0.14 + 0.01)
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0
    assert expected_calibration_error(np.full(4, 0.25), np.array([1, 0, 0, 0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration_bins(np.array([1.2]), np.array([1]))


# ----------------------------------------------------------------------------------------------------------------
# Scale
# ----------------------------------------------------------------------------------------------------------------


def test_scale_smoke_fit_and_score(world: tuple[pd.DataFrame, pd.DataFrame], model: MatchModel) -> None:
    train, test = world
    big = pd.concat([test] * (1_000_000 // len(test) + 1), ignore_index=True)
    cpu = time.process_time()
    p = score_candidates(big, model)
    score_cpu = time.process_time() - cpu
    cpu = time.process_time()
    fit_match_model(train)
    fit_cpu = time.process_time() - cpu
    print(f"\nscore_candidates: {len(big):,} pairs in {score_cpu:.2f}s cpu")
    print(f"fit_match_model: {len(train):,} pairs in {fit_cpu:.2f}s cpu")
    assert len(p) == len(big)
    assert score_cpu < 60 and fit_cpu < 60


# ----------------------------------------------------------------------------------------------------------------
# Unseen later clicks
# ----------------------------------------------------------------------------------------------------------------


def jar_world(n: int, stale_share: float, seed: int = 0) -> pd.DataFrame:
    """Labelled conversions whose direct click is either the click that led to the conversion (short lag) or
    the stale last click of a jar clicking at random (the converter's real last click is elsewhere, unseen)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        # the jar's clicks: a Poisson process over the 30-day lookback, ages in hours before the conversion
        ages = np.sort(rng.uniform(0, 720, rng.poisson(8)))
        if rng.random() >= stale_share:
            led = rng.exponential(2.0)
            ages = np.concatenate([[led], ages[ages > led]])
        if len(ages) == 0:
            continue
        for k, age in enumerate(ages):
            rows.append(
                pair(
                    conversion_id=f"cv{i}",
                    gap_seconds=float(age * 3600),
                    sig_cookie=True,
                    sig_direct_click=k == 0,
                    conversion_has_direct_click=True,
                    click_identity_id=f"id{i}",
                )
            )
    return pd.DataFrame(rows)


def test_unseen_later_click_estimate_is_monotone_and_finds_stale_direct_clicks() -> None:
    frame = jar_world(1500, stale_share=0.3)
    labelled, label = labelled_pairs(frame)
    hours, survival, stats = fit_unseen_later_click(frame, labelled, label)
    assert stats["survival_used"] == 1.0
    s = np.asarray(survival)
    assert len(hours) == len(s) > 3 and (np.diff(s) <= 1e-12).all()
    assert ((s >= 0) & (s <= 1)).all()
    assert s[0] > 0.97  # a click minutes before the conversion is almost never overtaken
    assert s[-1] < 0.3  # a jar's last click days before the conversion usually is
    assert 0.15 < stats["survival_stale_share"] < 0.45
    model = MatchModel(source="prior", coefficients={}, calibration="none", survival_hours=hours, survival=survival)
    p = no_unseen_later_click(model, np.array([0.0, 1.0, 100.0, 1e4]))
    assert (np.diff(p) <= 1e-12).all() and p[0] == pytest.approx(s[0])
    assert no_unseen_later_click(prior_model(), np.array([5.0, 500.0])).tolist() == [1.0, 1.0]


def test_stated_unseen_later_click_factor_keeps_part_of_the_estimate_and_never_reaches_zero() -> None:
    model = MatchModel(
        source="prior", coefficients={}, calibration="none", survival_hours=(1.0, 10.0, 100.0), survival=(1.0, 0.6, 0.0)
    )
    age = np.array([1.0, 10.0, 100.0, 1e4])
    assert no_unseen_later_click(model, age).tolist() == pytest.approx([1.0, 0.6, 0.0, 0.0])
    assert stated_no_unseen_later_click(model, age, 0.5).tolist() == pytest.approx([1.0, 0.8, 0.5, 0.5])
    assert stated_no_unseen_later_click(model, age, 1.0).tolist() == pytest.approx([1.0, 0.6, 0.0, 0.0])
    assert stated_no_unseen_later_click(prior_model(), age).tolist() == [1.0] * 4  # no estimate: no factor
    with pytest.raises(ValueError, match="stale_weight"):
        stated_no_unseen_later_click(model, age, 1.5)


def test_stale_share_bound_is_the_smallest_density_ratio_with_each_count_at_its_upper_bound() -> None:
    # f_direct = (0.4, 0.3, 0.2, 0.1), f_stale = (0.1, 0.1, 0.4, 0.4): ratios 4, 3, 0.5, 0.25.
    n_direct, n_placebo = np.array([40.0, 30.0, 20.0, 10.0]), np.array([10.0, 10.0, 40.0, 40.0])
    assert stale_share_bound(n_direct, n_placebo, z=0.0) == pytest.approx(0.25)
    # The Poisson score interval's upper end of the oldest bin: 10 + z^2 / 2 + z * sqrt(10 + z^2 / 4).
    upper = 10 + 0.5 + np.sqrt(10.25)
    assert stale_share_bound(n_direct, n_placebo, z=1.0) == pytest.approx(upper / 100 / 0.4)
    # More of the same data: the bound tightens towards the ratio, from above.
    bounds = [stale_share_bound(k * n_direct, n_placebo, z=1.645) for k in (1, 10, 100, 10_000)]
    assert (np.diff(bounds) < 0).all() and bounds[-1] == pytest.approx(0.25, abs=2e-3)


def test_stale_share_bound_lets_empty_bins_speak_and_no_sparse_bin_decide() -> None:
    # No direct click where 99 % of placebo ages fall: at most z^2 / (N * 0.99) of the direct clicks can be stale.
    assert stale_share_bound(np.array([100.0, 0.0]), np.array([1.0, 99.0]), z=1.645) == pytest.approx(
        1.645**2 / 100 / 0.99
    )
    # Five direct clicks where half the placebo ages fall: the raw ratio says 0.1, the bound does not trust it.
    assert stale_share_bound(np.array([95.0, 5.0]), np.array([50.0, 50.0]), z=1.645) > 0.2
    # Bins without placebo ages cap nothing; without any, or without direct clicks, there is no bound.
    assert stale_share_bound(np.array([90.0, 10.0]), np.array([0.0, 10.0]), z=0.0) == pytest.approx(0.1)
    assert stale_share_bound(np.array([5.0, 5.0]), np.zeros(2)) == 1.0
    assert stale_share_bound(np.zeros(2), np.array([1.0, 1.0])) == 1.0
    with pytest.raises(ValueError, match="non-negative"):
        stale_share_bound(np.array([1.0, -1.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="z must"):
        stale_share_bound(np.array([1.0, 1.0]), np.array([1.0, 1.0]), z=-1.0)


def test_unseen_later_click_share_stays_near_the_truth_with_few_labelled_conversions() -> None:
    """250 labelled conversions, 10 % stale: the old ages hold few direct clicks each. Keeping only bins of 15+
    direct clicks left the young bins alone to decide, where direct clicks outnumber placebo ages, and the share
    came out 1 (every old touch stated overtaken); every bin's count at its upper bound keeps it near 0.1."""
    frame = jar_world(250, stale_share=0.1)
    labelled, label = labelled_pairs(frame)
    *_, stats = fit_unseen_later_click(frame, labelled, label)
    assert stats["survival_used"] == 1.0
    assert 0.02 < stats["survival_stale_share"] < 0.3


def test_unseen_later_click_needs_enough_labelled_conversions() -> None:
    frame = jar_world(SURVIVAL_MIN_CONVERSIONS - 10, stale_share=0.3)
    labelled, label = labelled_pairs(frame)
    assert fit_unseen_later_click(frame, labelled, label)[:2] == ((), ())


# ----------------------------------------------------------------------------------------------------------------
# Recency ranks and the label shift statistic
# ----------------------------------------------------------------------------------------------------------------


def test_recency_ranks_enter_the_design_only_where_the_pair_shares_the_value() -> None:
    """fingerprint_rank = sig_fingerprint * log(rank); ip_rank uses the IP + user agent rank where both are shared.
    Unknown ranks (no column, or null) are rank 1: no evidence either way, and old candidate tables still score."""
    frame = pd.DataFrame(
        [
            pair(sig_fingerprint=True, fingerprint_recency_rank=4, ip_recency_rank=9),
            pair(sig_ip=True, sig_ip_ua=True, ip_recency_rank=9, ip_ua_recency_rank=2),
            pair(sig_ip=True, ip_recency_rank=3),
            pair(sig_fingerprint=True, fingerprint_recency_rank=None),
        ]
    )
    x = pd.DataFrame(_design(frame), columns=list(TERMS))
    np.testing.assert_allclose(x["fingerprint_rank"], [np.log(4), 0, 0, 0])
    np.testing.assert_allclose(x["ip_rank"], [0, np.log(2), np.log(3), 0])
    without = pd.DataFrame(_design(frame.drop(columns=list(RANK_COLUMNS))), columns=list(TERMS))
    assert (without[["fingerprint_rank", "ip_rank"]] == 0).all().all()


def test_standardised_mean_difference_worked_example() -> None:
    assert standardised_mean_difference(np.array([0, 0, 1, 1.0]), np.array([1, 1, 1, 1.0])) == pytest.approx(
        0.5 / np.sqrt(0.125)
    )
    assert standardised_mean_difference(np.ones(3), np.ones(5)) == 0.0
    assert np.isnan(standardised_mean_difference(np.ones(3), np.array([])))


def _shift_frame(unlabelled_signal: str) -> pd.DataFrame:
    """40 labelled conversions (direct click + a cookie-sharing click) and 40 unlabelled ones whose only candidate
    shares ``unlabelled_signal``."""
    rows = []
    for i in range(40):
        rows.append(pair(conversion_id=f"l{i}", sig_direct_click=True, conversion_has_direct_click=True))
        rows.append(pair(conversion_id=f"l{i}", sig_cookie=True, conversion_has_direct_click=True))
        rows.append(pair(conversion_id=f"u{i}", **{f"sig_{unlabelled_signal}": True}))
    return pd.DataFrame(rows)


def test_label_shift_flags_unlabelled_conversions_unlike_the_labels() -> None:
    table, summary = label_shift(_shift_frame("ip"))
    smd = table.set_index("feature")["smd"]
    assert smd["sig_cookie"] == -np.inf and smd["sig_ip"] == np.inf  # constant in each group, apart
    assert summary["labelled_conversions"] == summary["unlabelled_conversions"] == 40
    assert summary["unsupported_share"] == 1.0 and summary["extrapolating"] == 1.0


def test_label_shift_is_quiet_when_the_groups_look_alike() -> None:
    table, summary = label_shift(_shift_frame("cookie"))
    assert (table["smd"].abs() < 1e-12).all()
    assert summary["max_abs_smd"] == 0.0 and summary["unsupported_share"] == 0.0
    assert summary["extrapolating"] == 0.0
    # With scores the best pair per conversion is the highest-scored one: here the only non-direct one.
    _, scored = label_shift(_shift_frame("cookie"), scores=np.linspace(0, 1, 120))
    assert scored == summary


def test_weak_pair_em_recovers_a_known_mixture() -> None:
    """Fellegi-Sunter EM on weak-only pairs drawn from a known two-class mixture (20 % matches): matches are mostly
    minutes before the conversion on a private IP and fingerprint, non-matches mostly days before on crowded
    ones; identity-linked anchors look like matches. EM finds the match rate and separates the classes."""
    rng = np.random.default_rng(3)
    n, rate = 6000, 0.2
    match = rng.random(n) < rate

    def mix(p_match: float, p_non: float) -> np.ndarray:
        return np.where(match, rng.random(n) < p_match, rng.random(n) < p_non)

    quick = mix(0.8, 0.03)
    private_ip = mix(0.85, 0.1)
    private_fp = mix(0.7, 0.05)
    gap = np.where(quick, rng.uniform(60, 500, n), rng.uniform(3_600, 20 * 86_400, n))
    rows = pd.DataFrame(
        [
            pair(
                conversion_id=f"c{i}",
                sig_ip=True,
                sig_fingerprint=True,
                gap_seconds=float(gap[i]),
                ip_popularity=1.0 if private_ip[i] else 40.0,
                fingerprint_popularity=1.0 if private_fp[i] else 300.0,
            )
            for i in range(n)
        ]
    )
    anchors = pd.DataFrame(
        [
            pair(conversion_id=f"a{i}", sig_ip=True, sig_fingerprint=True, sig_identity=True, gap_seconds=120.0)
            for i in range(300)
        ]
    )
    frame = pd.concat([rows, anchors], ignore_index=True)
    config = MatchModelConfig(weak_min_pairs=1000, weak_min_anchors=50, weak_shrinkage=0.0)
    weak, stats = _fit_weak_model(frame, config)
    assert weak is not None and stats["weak_model_used"] == 1.0
    assert stats["weak_lambda"] == pytest.approx(rate, abs=0.04)
    p = _score_weak(weak, rows)
    assert np.mean(p[match]) > 0.7 and np.mean(p[~match]) < 0.1
    assert auc(p, match) > 0.95


def test_the_fit_reads_the_newest_days_up_to_its_pair_bound_and_always_the_newest_day() -> None:
    days = pd.DataFrame(
        {
            # Unsorted, as a GROUP BY returns them.
            "conversion_date": [date(2026, 3, d) for d in (3, 1, 4, 2)],
            "pairs": [300, 100, 400, 200],
        }
    )
    assert fit_window_start(days, 10_000) == date(2026, 3, 1)  # everything fits: the whole window
    assert fit_window_start(days, 700) == date(2026, 3, 3)  # 400 + 300 = 700, one more day would pass it
    assert fit_window_start(days, 699) == date(2026, 3, 4)
    assert fit_window_start(days, 10) == date(2026, 3, 4)  # the newest day even when it alone is over the bound
    assert fit_window_start(days.iloc[:0], 10) is None
