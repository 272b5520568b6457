"""Accuracy of the attribution pipeline against the synthetic world's ground truth, project vs baseline.

Pure functions on DataFrames: the CLI reads the warehouse tables and the truth files, calls
:func:`evaluate` and prints :func:`format_report` (or ``json.dumps`` of the result). No I/O here.

Conventions shared by every metric:

* The universe of conversions is ``truth_conversions``; predictions for conversions the truth does not
  know are ignored (and counted as ``unmatched_predictions``). The universe of clicks is the clicks present
  in both the prediction and the truth.
* A ratio whose denominator is zero is NaN (``None`` once the result is made JSON-safe), never 0 or 1: e.g.
  in a world where every conversion is organic, last-touch recall is NaN and any attribution drives
  precision to 0.
* Identifiers are compared as text, so ``7``, ``7.0`` and ``"7"`` are the same key; an empty string is
  missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from python_models.calibration import calibration_bins, expected_calibration_error

DEFAULT_N_BINS = 10
LINEAR_MODEL = "linear"
BASELINE_MODEL = "rule_based"

# The multi-touch bucket for credit a model leaves unattributed. Real link keys are never empty (`_key` turns
# empty strings into missing values), so this key cannot collide with a link.
_UNATTRIBUTED_BUCKET = ""

_TRUE_TEXT = frozenset({"true", "t", "1", "1.0", "yes", "y"})
_FALSE_TEXT = frozenset({"false", "f", "0", "0.0", "no", "n"})

PICK_COLUMNS = ["conversion_id", "link_id", "is_attributed", "confidence"]


# ----------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, table: str, columns: Iterable[str]) -> pd.DataFrame:
    """``frame`` if it has ``columns``; an empty frame gets the missing ones, anything else is an error."""
    missing = [column for column in columns if column not in frame.columns]
    if not missing:
        return frame
    if len(frame) == 0:
        return frame.assign(**{column: pd.Series(dtype="object") for column in missing})
    raise ValueError(f"{table}: missing required column {missing[0]!r} (has {list(frame.columns)})")


def _key(values: pd.Series) -> pd.Series:
    """Identifiers as nullable text: integral floats lose their '.0', blanks become missing."""
    if pd.api.types.is_float_dtype(values):
        present = values.dropna()
        if bool((present == np.floor(present)).all()):
            values = values.astype("Int64")
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def _as_bool(values: pd.Series, table: str, column: str, *, null: bool | None = False) -> pd.Series:
    """Booleans from bool, 0/1 or text columns; missing values become ``null`` (an error when None)."""
    if pd.api.types.is_bool_dtype(values) and not values.isna().any():
        return values.astype(bool)
    text = values.astype("string").str.strip().str.lower()
    is_true = text.isin(_TRUE_TEXT).fillna(False).astype(bool)
    is_false = text.isin(_FALSE_TEXT).fillna(False).astype(bool)
    is_null = text.isna().to_numpy()
    invalid = ~(is_true | is_false) & ~is_null
    if invalid.any():
        bad = values[invalid].iloc[0]
        raise ValueError(f"{table}.{column}: {bad!r} is not a boolean")
    if is_null.any() and null is None:
        raise ValueError(f"{table}.{column}: missing value where a boolean is required")
    return is_true.where(~is_null, bool(null)).astype(bool)


def _unique(frame: pd.DataFrame, table: str, column: str) -> None:
    duplicated = frame[column].duplicated() & frame[column].notna()
    if duplicated.any():
        raise ValueError(f"{table}.{column}: {frame.loc[duplicated, column].iloc[0]!r} appears more than once")


def _same(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Element-wise equality where a missing value on either side is False."""
    return (left == right).fillna(False).to_numpy(dtype=bool)


def _isin(values: pd.Series, allowed: pd.Series | pd.Index) -> np.ndarray:
    """``values.isin(allowed)`` through a hash lookup (arrow-backed ``isin`` loops in Python)."""
    return pd.Index(pd.unique(allowed.dropna())).get_indexer(values) >= 0


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


def _f1(precision: float, recall: float) -> float:
    if math.isnan(precision) or math.isnan(recall):
        return math.nan
    total = precision + recall
    return 2.0 * precision * recall / total if total else 0.0


def to_jsonable(value: Any) -> Any:
    """Plain dicts/lists/str/int/float/bool/None: numpy scalars unwrapped, NaN and ±inf become None."""
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return value
    raise TypeError(f"cannot make {type(value).__name__} {value!r} JSON-serialisable")


# ----------------------------------------------------------------------------------------------------
# Picks: one row per conversion with the system's top link, whether it commits to it, and its confidence
# ----------------------------------------------------------------------------------------------------


def project_picks(conversion_attribution: pd.DataFrame) -> pd.DataFrame:
    """The project's pick per conversion, in the common ``PICK_COLUMNS`` schema.

    ``link_id`` is ``attributed_link_id``, or, when that is missing, the optional ``candidate_link_id``
    column (the best candidate of an unattributed conversion) if the table carries one. ``is_attributed`` is
    true only when the row says so *and* names a link; a row flagged attributed without a link counts as
    unattributed.
    """
    table = "conversion_attribution"
    frame = _require(conversion_attribution, table, ["conversion_id", "attributed_link_id", "confidence_score"])
    link = _key(frame["attributed_link_id"])
    if "candidate_link_id" in frame.columns:
        link = link.fillna(_key(frame["candidate_link_id"]))
    flagged = (
        _as_bool(frame["is_attributed"], table, "is_attributed")
        if "is_attributed" in frame.columns
        else frame["attributed_link_id"].notna()
    )
    picks = pd.DataFrame(
        {
            "conversion_id": _key(frame["conversion_id"]),
            "link_id": link,
            "is_attributed": flagged.to_numpy(dtype=bool) & _key(frame["attributed_link_id"]).notna().to_numpy(),
            "confidence": pd.to_numeric(frame["confidence_score"], errors="raise").astype(float),
        }
    )
    _unique(picks, table, "conversion_id")
    return picks.reset_index(drop=True)


def baseline_picks(baseline_pick: pd.DataFrame) -> pd.DataFrame:
    """The fixed-confidence rule's pick per conversion; every pick with a link is an attribution."""
    table = "baseline_pick"
    frame = _require(baseline_pick, table, ["conversion_id", "link_id", "confidence"])
    link = _key(frame["link_id"])
    picks = pd.DataFrame(
        {
            "conversion_id": _key(frame["conversion_id"]),
            "link_id": link,
            "is_attributed": link.notna().to_numpy(dtype=bool),
            "confidence": pd.to_numeric(frame["confidence"], errors="raise").astype(float),
        }
    )
    _unique(picks, table, "conversion_id")
    return picks.reset_index(drop=True)


def _truth_conversions(truth_conversions: pd.DataFrame, extra: Iterable[str] = ()) -> pd.DataFrame:
    table = "truth_conversions"
    frame = _require(truth_conversions, table, ["conversion_id", "true_last_link_id", *extra])
    out = frame.assign(conversion_id=_key(frame["conversion_id"]), true_last_link_id=_key(frame["true_last_link_id"]))
    _unique(out, table, "conversion_id")
    return out


def _picks_with_truth(picks: pd.DataFrame, truth: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Truth conversions left-joined to the picks; also the number of picks the truth does not know."""
    picks = _require(picks, "picks", PICK_COLUMNS)
    # Callers may build picks by hand: normalise them like project_picks/baseline_picks do.
    picks = pd.DataFrame(
        {
            "conversion_id": _key(picks["conversion_id"]),
            "link_id": _key(picks["link_id"]),
            "is_attributed": _as_bool(picks["is_attributed"], "picks", "is_attributed").to_numpy(),
            "confidence": pd.to_numeric(picks["confidence"], errors="raise").astype(float),
        }
    )
    _unique(picks, "picks", "conversion_id")
    joined = truth.merge(picks, on="conversion_id", how="left", validate="one_to_one")
    unmatched = int((~_isin(picks["conversion_id"], truth["conversion_id"])).sum())
    joined["is_attributed"] = joined["is_attributed"].fillna(False).astype(bool)
    return joined, unmatched


# ----------------------------------------------------------------------------------------------------
# Last touch
# ----------------------------------------------------------------------------------------------------


def last_touch_metrics(picks: pd.DataFrame, truth_conversions: pd.DataFrame) -> dict[str, Any]:
    """Link-level precision/recall/F1 of the attributed link against the true last touch.

    * attributed: the system commits to a link (``is_attributed``);
    * correct: attributed and the link equals ``true_last_link_id``;
    * attributable: ``true_last_link_id`` is not null.

    precision = correct / attributed (attributing an organic conversion or the wrong link counts against
    it), recall = correct / attributable, both NaN when their denominator is 0.
    ``accuracy_among_attributable`` is the share of attributable conversions whose *top* link (attributed or
    best candidate) is the true last link.
    """
    truth = _truth_conversions(truth_conversions, ["is_organic"])
    joined, unmatched = _picks_with_truth(picks, truth)
    is_organic = _as_bool(joined["is_organic"], "truth_conversions", "is_organic").to_numpy()
    attributable = joined["true_last_link_id"].notna().to_numpy()
    attributed = joined["is_attributed"].to_numpy(dtype=bool)
    top_is_right = _same(joined["link_id"], joined["true_last_link_id"])
    correct = attributed & top_is_right

    n_attributed, n_correct, n_attributable = (
        int(attributed.sum()),
        int(correct.sum()),
        int(attributable.sum()),
    )
    precision = _ratio(n_correct, n_attributed)
    recall = _ratio(n_correct, n_attributable)
    return {
        "n_conversions": len(joined),
        "attributable": n_attributable,
        "attributed": n_attributed,
        "correct": n_correct,
        "organic_attributed": int((attributed & is_organic).sum()),
        "unattributable_attributed": int((attributed & ~attributable).sum()),
        "top_candidate_correct": int((top_is_right & attributable).sum()),
        "unmatched_predictions": unmatched,
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "accuracy_among_attributable": _ratio(int((top_is_right & attributable).sum()), n_attributable),
    }


# ----------------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------------


def _calibration_inputs(p: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and 0/1 outcomes as floats, pairs with a missing value dropped; a clear error otherwise."""
    prob = pd.to_numeric(pd.Series(np.asarray(p, dtype=object)), errors="raise").astype(float).to_numpy()
    outcome = pd.to_numeric(pd.Series(np.asarray(y, dtype=object)), errors="raise").astype(float).to_numpy()
    if prob.shape != outcome.shape:
        raise ValueError(f"calibration: {prob.shape[0]} probabilities but {outcome.shape[0]} outcomes")
    keep = ~(np.isnan(prob) | np.isnan(outcome))
    prob, outcome = prob[keep], outcome[keep]
    outside = (prob < 0.0) | (prob > 1.0)
    if outside.any():
        raise ValueError(f"calibration: probability {prob[outside][0]!r} is outside [0, 1]")
    if not np.isin(outcome, (0.0, 1.0)).all():
        raise ValueError(f"calibration: outcome {outcome[~np.isin(outcome, (0.0, 1.0))][0]!r} is not 0/1")
    return prob, outcome


def calibration_table(p: Any, y: Any, n_bins: int = DEFAULT_N_BINS) -> pd.DataFrame:
    """Reliability table over ``n_bins`` equal-width bins of [0, 1].

    Bin ``b`` holds ``b/n_bins <= p < (b+1)/n_bins``; the last bin also holds ``p == 1``. Pairs whose
    probability or outcome is missing are dropped. One row per bin (empty bins included, with NaN means):
    ``bin, lower, upper, n, mean_predicted, observed_rate, abs_gap``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    table = calibration_bins(*_calibration_inputs(p, y), n_bins)
    table["abs_gap"] = (table["mean_predicted"] - table["observed_rate"]).abs()
    return table


def ece(p: Any, y: Any, n_bins: int = DEFAULT_N_BINS) -> float:
    """Expected calibration error (the production metric, :func:`python_models.calibration.expected_calibration_error`);
    NaN when no pair has both a probability and an outcome."""
    prob, outcome = _calibration_inputs(p, y)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if len(prob) == 0:
        return math.nan
    return expected_calibration_error(prob, outcome, n_bins)


def ece_noise_floor(p: Any, n_bins: int = DEFAULT_N_BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model with these probabilities shows by chance alone: the mean ECE over
    ``draws`` sets of outcomes drawn as Bernoulli(p) (seeded, so a figure is reproducible). An ECE near it cannot
    be told from perfect calibration at this sample size: about 0.03 for 400 picks, 0.013 for 2,600 (the `transfer`
    family at 3,000 and 20,000 persons). NaN for no probabilities."""
    prob, _ = _calibration_inputs(p, np.zeros(np.shape(p)))  # the checks on p; no outcomes are needed
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if len(prob) == 0:
        return math.nan
    # Bin b holds b/n_bins <= p < (b+1)/n_bins, the last also p == 1 (as calibration_bins); a bin's share times
    # its gap is |sum of p - sum of outcomes| / n.
    bins = np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)
    stated = np.bincount(bins, prob, n_bins)
    rng = np.random.default_rng(seed)
    # One draw at a time: memory stays that of one set of outcomes whatever the number of picks.
    gaps = [np.abs(stated - np.bincount(bins, rng.random(len(prob)) < prob, n_bins)).sum() for _ in range(draws)]
    return float(np.mean(gaps) / len(prob))


def calibration_metrics(
    picks: pd.DataFrame, truth_conversions: pd.DataFrame, n_bins: int = DEFAULT_N_BINS
) -> dict[str, Any]:
    """Calibration of the pick's confidence against "the picked link is the true last link".

    Only conversions known to the truth whose pick names a link and has a confidence take part; an organic
    conversion's pick is always wrong. Also reports the ECE a calibrated model would show at this sample size
    (:func:`ece_noise_floor`), the Brier score and the bins as a list of plain dicts.
    """
    joined, _ = _picks_with_truth(picks, _truth_conversions(truth_conversions))
    scored = joined[joined["link_id"].notna() & joined["confidence"].notna()]
    prob = scored["confidence"].to_numpy(dtype=float)
    right = _same(scored["link_id"], scored["true_last_link_id"]).astype(float)
    table = calibration_table(prob, right, n_bins)
    return {
        "n": len(scored),
        "ece": ece(prob, right, n_bins),
        "ece_noise_floor": ece_noise_floor(prob, n_bins),
        "brier": float(np.mean((prob - right) ** 2)) if len(scored) else math.nan,
        "mean_confidence": float(prob.mean()) if len(scored) else math.nan,
        "observed_accuracy": float(right.mean()) if len(scored) else math.nan,
        "bins": table.to_dict(orient="records"),
    }


# ----------------------------------------------------------------------------------------------------
# Identity resolution
# ----------------------------------------------------------------------------------------------------


def pair_calibration_metrics(
    pairs: pd.DataFrame, truth_clicks: pd.DataFrame, truth_conversions: pd.DataFrame, n_bins: int = DEFAULT_N_BINS
) -> dict[str, Any]:
    """Calibration of candidate-pair probabilities against "this click was made by the converting person".

    ``pairs`` holds (conversion_id, click_id, probability). A pair is right when the truth gives the click and the
    conversion the same person; a bot click (no person) is never the converter's. Pairs without a probability, or
    whose click or conversion the truth does not know, do not take part (``n_unknown`` counts the latter).
    """
    pairs = _require(pairs, "pairs", ["conversion_id", "click_id", "probability"])
    clicks = _require(truth_clicks, "truth_clicks", ["click_id", "person_id"])
    conversions = _require(truth_conversions, "truth_conversions", ["conversion_id", "person_id"])
    frame = pd.DataFrame(
        {
            "conversion_id": _key(pairs["conversion_id"]),
            "click_id": _key(pairs["click_id"]),
            "probability": pd.to_numeric(pairs["probability"], errors="raise").astype(float),
        }
    )
    frame = frame[frame["probability"].notna()]
    click_person = pd.Series(_key(clicks["person_id"]).to_numpy(), index=_key(clicks["click_id"]))
    conversion_person = pd.Series(_key(conversions["person_id"]).to_numpy(), index=_key(conversions["conversion_id"]))
    _unique(click_person.index.to_frame(name="click_id"), "truth_clicks", "click_id")
    _unique(conversion_person.index.to_frame(name="conversion_id"), "truth_conversions", "conversion_id")
    known = _isin(frame["click_id"], click_person.index) & _isin(frame["conversion_id"], conversion_person.index)
    scored = frame[known]
    clicker = click_person.reindex(scored["click_id"]).reset_index(drop=True)
    converter = conversion_person.reindex(scored["conversion_id"]).reset_index(drop=True)
    right = _same(clicker, converter).astype(float)
    prob = scored["probability"].to_numpy(dtype=float)
    return {
        "n": len(scored),
        "n_unknown": int((~known).sum()),
        "ece": ece(prob, right, n_bins),
        "brier": float(np.mean((prob - right) ** 2)) if len(scored) else math.nan,
        "mean_probability": float(prob.mean()) if len(scored) else math.nan,
        "observed_rate": float(right.mean()) if len(scored) else math.nan,
    }


def _cluster_codes(labels: pd.Series) -> np.ndarray:
    """Integer cluster codes; every missing label becomes a singleton cluster of its own."""
    codes, uniques = pd.factorize(labels, use_na_sentinel=True)
    missing = codes < 0
    codes[missing] = len(uniques) + np.arange(int(missing.sum()))
    return codes


def bcubed(predicted: Any, truth: Any) -> dict[str, Any]:
    """B-cubed precision, recall and F1 (Bagga & Baldwin 1998) of a clustering against the true one.

    ``predicted`` and ``truth`` are aligned cluster labels, one per item. For each item, precision is
    |items sharing its predicted cluster and its true cluster| / |its predicted cluster| and recall is the
    same over |its true cluster|; both are averaged over items. A missing label (either side) is a singleton
    cluster. NaN when there are no items.
    """
    pred_codes = _cluster_codes(pd.Series(np.asarray(predicted, dtype=object)))
    true_codes = _cluster_codes(pd.Series(np.asarray(truth, dtype=object)))
    if pred_codes.shape != true_codes.shape:
        raise ValueError(f"bcubed: {pred_codes.shape[0]} predicted labels but {true_codes.shape[0]} true labels")
    if len(pred_codes) == 0:
        return {"n": 0, "precision": math.nan, "recall": math.nan, "f1": math.nan}
    items = pd.DataFrame({"pred": pred_codes, "true": true_codes})
    pred_size = items.groupby("pred")["pred"].transform("size")
    true_size = items.groupby("true")["true"].transform("size")
    both_size = items.groupby(["pred", "true"])["pred"].transform("size")
    precision = float((both_size / pred_size).mean())
    recall = float((both_size / true_size).mean())
    return {"n": len(items), "precision": precision, "recall": recall, "f1": _f1(precision, recall)}


_IDENTITY_KEYS = ("n", "precision", "recall", "f1", "predicted_identities", "true_persons")
_PAIR_KEYS = ("n", "n_unknown", "ece", "brier", "mean_probability", "observed_rate")


def identity_metrics(
    click_clusters: pd.DataFrame,
    truth_clicks: pd.DataFrame,
    *,
    cluster_column: str = "identity_id",
    table: str = "click_identities",
) -> dict[str, Any]:
    """B-cubed scores of clicks' predicted cluster (``cluster_column``) against the true person.

    Over the non-bot clicks (truth ``is_bot`` false, ``person_id`` known) present in both tables. A click with
    a missing predicted cluster is its own singleton identity.
    """
    clusters = _require(click_clusters, table, ["click_id", cluster_column])
    clusters = pd.DataFrame({"click_id": _key(clusters["click_id"]), "cluster": _key(clusters[cluster_column])})
    _unique(clusters, table, "click_id")
    truth = _require(truth_clicks, "truth_clicks", ["click_id", "person_id", "is_bot"])
    is_bot = _as_bool(truth["is_bot"], "truth_clicks", "is_bot", null=None).to_numpy()
    humans = pd.DataFrame({"click_id": _key(truth["click_id"]), "person_id": _key(truth["person_id"])})
    humans = humans[~is_bot & humans["person_id"].notna().to_numpy()]
    _unique(humans, "truth_clicks", "click_id")
    joined = humans.merge(clusters, on="click_id", how="inner", validate="one_to_one")
    scores = bcubed(joined["cluster"], joined["person_id"])
    return {
        **scores,
        "predicted_identities": int(joined["cluster"].nunique(dropna=True) + joined["cluster"].isna().sum()),
        "true_persons": int(joined["person_id"].nunique()),
    }


# ----------------------------------------------------------------------------------------------------
# Bot filtering
# ----------------------------------------------------------------------------------------------------


def _flags(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    frame = _require(frame, table, ["click_id", "is_bot"])
    flags = pd.DataFrame(
        {"click_id": _key(frame["click_id"]), "is_bot": _as_bool(frame["is_bot"], table, "is_bot").to_numpy()}
    )
    flags = flags.dropna(subset=["click_id"])
    if flags["click_id"].is_unique:
        return flags
    # A click listed twice is a bot if any of its rows says so.
    return flags.groupby("click_id", as_index=False)["is_bot"].max()


def bot_filtering_metrics(clicks_flagged: pd.DataFrame, truth_clicks: pd.DataFrame) -> dict[str, Any]:
    """Precision and recall of the predicted bot flag over distinct clicks present in both tables.

    precision = true bots flagged / clicks flagged (NaN when nothing is flagged), recall = true bots flagged /
    true bots (NaN when the world has no bots).
    """
    predicted = _flags(clicks_flagged, "clicks_flagged").rename(columns={"is_bot": "predicted"})
    actual = _flags(truth_clicks, "truth_clicks").rename(columns={"is_bot": "actual"})
    joined = predicted.merge(actual, on="click_id", how="inner", validate="one_to_one")
    pred = joined["predicted"].to_numpy(dtype=bool)
    true = joined["actual"].to_numpy(dtype=bool)
    true_positive = int((pred & true).sum())
    precision = _ratio(true_positive, int(pred.sum()))
    recall = _ratio(true_positive, int(true.sum()))
    return {
        "n_clicks": len(joined),
        "true_bots": int(true.sum()),
        "flagged": int(pred.sum()),
        "true_positive": true_positive,
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "accuracy": _ratio(int((pred == true).sum()), len(joined)),
    }


# ----------------------------------------------------------------------------------------------------
# Multi-touch
# ----------------------------------------------------------------------------------------------------


def linear_truth_credit(truth_conversions: pd.DataFrame) -> pd.DataFrame:
    """True linear credit per (conversion, link): uniform over ``touch_link_ids``, repeated links accumulate.

    Only attributable conversions (``true_last_link_id`` not null) appear; one whose touch list is empty falls
    back to its true last link. Columns ``conversion_id, link_id, credit_share``.
    """
    truth = _truth_conversions(truth_conversions, ["touch_link_ids"])
    truth = truth[truth["true_last_link_id"].notna()]
    touches = truth["touch_link_ids"].astype("string").str.split()
    no_touch = touches.isna() | (touches.str.len() == 0).fillna(True)
    touches = touches.where(~no_touch, truth["true_last_link_id"].str.split())
    exploded = pd.DataFrame({"conversion_id": truth["conversion_id"], "link_id": touches}).explode("link_id")
    exploded["link_id"] = _key(exploded["link_id"])
    exploded["credit_share"] = 1.0 / exploded.groupby("conversion_id")["link_id"].transform("size")
    return (
        exploded.groupby(["conversion_id", "link_id"], as_index=False, sort=True)["credit_share"]
        .sum()
        .astype({"credit_share": float})
    )


def total_variation(predicted: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Per-conversion total-variation distance 0.5 * sum |p - q| between two long credit frames.

    Both frames have ``conversion_id, link_id, credit_share`` (rows for the same link are summed). Returns one
    value per conversion present in either frame, indexed by ``conversion_id``.
    """
    keys = ["conversion_id", "link_id"]
    p = predicted.groupby(keys, as_index=False, dropna=False)["credit_share"].sum()
    q = truth.groupby(keys, as_index=False, dropna=False)["credit_share"].sum()
    both = p.merge(q, on=keys, how="outer", suffixes=("_p", "_q"))
    gap = (both["credit_share_p"].fillna(0.0) - both["credit_share_q"].fillna(0.0)).abs()
    return (0.5 * gap).groupby(both["conversion_id"]).sum().rename("total_variation")


def multi_touch_metrics(
    credits: pd.DataFrame, truth_conversions: pd.DataFrame, model: str = LINEAR_MODEL
) -> dict[str, Any]:
    """Mean of 1 - TV(predicted credit of ``model``, true linear credit) over attributable conversions.

    Predicted credit is ``credit_share`` per link; unattributed credit (``is_unattributed`` or no link) is
    a bucket of its own that the truth never has. An attributable conversion without any credit row for the
    model counts as fully unattributed (score 0). When the model has no rows at all, ``available`` is false
    and the scores are NaN.
    """
    table = "credits"
    frame = _require(credits, table, ["conversion_id", "model", "link_id", "credit_share", "is_unattributed"])
    frame = frame[_same(frame["model"].astype("string"), pd.Series(model, index=frame.index, dtype="string"))]
    truth = linear_truth_credit(truth_conversions)
    attributable = pd.Index(truth["conversion_id"].unique(), name="conversion_id")
    result: dict[str, Any] = {"model": model, "available": len(frame) > 0, "n_conversions": len(attributable)}
    if len(frame) == 0 or len(attributable) == 0:
        return {**result, "mean_one_minus_tv": math.nan, "mean_tv": math.nan, "exact_share": math.nan}

    unattributed = _as_bool(frame["is_unattributed"], table, "is_unattributed").to_numpy()
    link = _key(frame["link_id"])
    predicted = pd.DataFrame(
        {
            "conversion_id": _key(frame["conversion_id"]),
            "link_id": link.where(~unattributed & link.notna().to_numpy(), _UNATTRIBUTED_BUCKET),
            "credit_share": pd.to_numeric(frame["credit_share"], errors="raise").astype(float),
        }
    )
    predicted = predicted[_isin(predicted["conversion_id"], attributable)]
    missing = attributable.difference(pd.Index(predicted["conversion_id"].unique()))
    filler = pd.DataFrame({"conversion_id": missing, "link_id": _UNATTRIBUTED_BUCKET, "credit_share": 1.0})
    predicted = pd.concat([predicted, filler.astype({"link_id": predicted["link_id"].dtype})], ignore_index=True)

    distance = total_variation(predicted, truth).reindex(attributable)
    return {
        **result,
        "mean_one_minus_tv": float((1.0 - distance).mean()),
        "mean_tv": float(distance.mean()),
        "exact_share": float((distance < 1e-9).mean()),
    }


# ----------------------------------------------------------------------------------------------------
# Everything, project vs baseline
# ----------------------------------------------------------------------------------------------------


def evaluate(
    conversion_attribution: pd.DataFrame,
    credits: pd.DataFrame,
    baseline_pick: pd.DataFrame,
    click_identities: pd.DataFrame,
    clicks_flagged: pd.DataFrame,
    truth_clicks: pd.DataFrame,
    truth_conversions: pd.DataFrame,
    *,
    click_cookies: pd.DataFrame | None = None,
    baseline_clicks_flagged: pd.DataFrame | None = None,
    pair_scores: pd.DataFrame | None = None,
    baseline_pair_scores: pd.DataFrame | None = None,
    n_bins: int = DEFAULT_N_BINS,
) -> dict[str, Any]:
    """Every metric for the project and the baseline; the result is JSON-safe (NaN -> None).

    Baseline choices: last touch and calibration use ``baseline_pick``; multi-touch uses the ``rule_based``
    credits; identity is "one identity per cookie" when ``click_cookies`` (click_id, cookie_id) is given,
    otherwise not available (all scores None); bot filtering uses ``baseline_clicks_flagged`` when given,
    otherwise "no filtering" (every click the project saw is treated as human). ``pair_scores`` and
    ``baseline_pair_scores`` (conversion_id, click_id, probability) add the calibration of every candidate pair's
    probability; without them that section is not available.
    """
    project = project_picks(conversion_attribution)
    baseline = baseline_picks(baseline_pick)

    if click_cookies is not None:
        baseline_identity = identity_metrics(
            click_cookies, truth_clicks, cluster_column="cookie_id", table="click_cookies"
        )
        baseline_identity["method"] = "one identity per cookie"
    else:
        baseline_identity = dict.fromkeys(_IDENTITY_KEYS, None)
        baseline_identity["method"] = "not available (no click_cookies)"

    if baseline_clicks_flagged is None:
        flagged = _require(clicks_flagged, "clicks_flagged", ["click_id"])
        baseline_clicks_flagged = pd.DataFrame({"click_id": flagged["click_id"], "is_bot": False})
        bot_method = "no filtering"
    else:
        bot_method = "baseline bot flags"

    def pair_calibration(pairs: pd.DataFrame | None) -> dict[str, Any]:
        if pairs is None:
            return dict.fromkeys(_PAIR_KEYS, None)
        return pair_calibration_metrics(pairs, truth_clicks, truth_conversions, n_bins)

    truth = _truth_conversions(truth_conversions, ["is_organic"])
    truth_click_flags = _flags(truth_clicks, "truth_clicks")
    result = {
        "n_bins": n_bins,
        "truth": {
            "conversions": len(truth),
            "attributable_conversions": int(truth["true_last_link_id"].notna().sum()),
            "organic_conversions": int(_as_bool(truth["is_organic"], "truth_conversions", "is_organic").sum()),
            "clicks": len(truth_click_flags),
            "bot_clicks": int(truth_click_flags["is_bot"].sum()),
        },
        "project": {
            "last_touch": last_touch_metrics(project, truth_conversions),
            "calibration": calibration_metrics(project, truth_conversions, n_bins),
            "pair_calibration": pair_calibration(pair_scores),
            "identity": {
                **identity_metrics(click_identities, truth_clicks),
                "method": "project identity graph",
            },
            "bot_filtering": {
                **bot_filtering_metrics(clicks_flagged, truth_clicks),
                "method": "project flags",
            },
            "multi_touch": multi_touch_metrics(credits, truth_conversions, LINEAR_MODEL),
        },
        "baseline": {
            "last_touch": last_touch_metrics(baseline, truth_conversions),
            "calibration": calibration_metrics(baseline, truth_conversions, n_bins),
            "pair_calibration": pair_calibration(baseline_pair_scores),
            "identity": baseline_identity,
            "bot_filtering": {
                **bot_filtering_metrics(baseline_clicks_flagged, truth_clicks),
                "method": bot_method,
            },
            "multi_touch": multi_touch_metrics(credits, truth_conversions, BASELINE_MODEL),
        },
    }
    return to_jsonable(result)


# ----------------------------------------------------------------------------------------------------
# Text report
# ----------------------------------------------------------------------------------------------------

_REPORT_ROWS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "last touch",
        [
            ("precision", "precision"),
            ("recall", "recall"),
            ("f1", "F1"),
            ("accuracy_among_attributable", "top-candidate accuracy (attributable)"),
            ("attributed", "attributed"),
            ("correct", "correct"),
            ("attributable", "attributable"),
            ("organic_attributed", "organic attributed"),
        ],
    ),
    (
        "calibration",
        [
            ("ece", "ECE"),
            ("brier", "Brier score"),
            ("mean_confidence", "mean confidence"),
            ("observed_accuracy", "observed accuracy"),
            ("n", "scored picks"),
        ],
    ),
    (
        "pair calibration",
        [
            ("ece", "ECE"),
            ("brier", "Brier score"),
            ("mean_probability", "mean probability"),
            ("observed_rate", "observed rate"),
            ("n", "candidate pairs"),
        ],
    ),
    (
        "identity (B-cubed)",
        [
            ("method", "method"),
            ("precision", "precision"),
            ("recall", "recall"),
            ("f1", "F1"),
            ("n", "clicks"),
            ("predicted_identities", "predicted identities"),
            ("true_persons", "true persons"),
        ],
    ),
    (
        "bot filtering",
        [
            ("method", "method"),
            ("precision", "precision"),
            ("recall", "recall"),
            ("f1", "F1"),
            ("flagged", "flagged"),
            ("true_bots", "true bots"),
        ],
    ),
    (
        "multi-touch (vs true linear)",
        [
            ("model", "model"),
            ("mean_one_minus_tv", "mean 1 - TV"),
            ("exact_share", "exact share"),
            ("n_conversions", "attributable conversions"),
        ],
    ),
]

_SECTION_KEYS = {
    "last touch": "last_touch",
    "calibration": "calibration",
    "pair calibration": "pair_calibration",
    "identity (B-cubed)": "identity",
    "bot filtering": "bot_filtering",
    "multi-touch (vs true linear)": "multi_touch",
}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _aligned(rows: list[list[str]], numeric_from: int = 1) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i >= numeric_from else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def format_report(result: Mapping[str, Any]) -> str:
    """The result of :func:`evaluate` as aligned text: a metric table, project vs baseline, then the bins."""
    project, baseline = result.get("project", {}), result.get("baseline", {})
    rows: list[list[str]] = [["metric", "project", "baseline"]]
    for title, metrics in _REPORT_ROWS:
        key = _SECTION_KEYS[title]
        left, right = project.get(key) or {}, baseline.get(key) or {}
        rows.append([f"[{title}]", "", ""])
        rows.extend([f"  {label}", _cell(left.get(name)), _cell(right.get(name))] for name, label in metrics)
    lines = _aligned(rows)
    lines.insert(1, "-" * len(lines[0]))

    project_bins = (project.get("calibration") or {}).get("bins") or []
    baseline_bins = (baseline.get("calibration") or {}).get("bins") or []
    if project_bins or baseline_bins:
        bins_rows = [["confidence bin", "project n", "mean conf", "observed", "baseline n", "mean conf", "observed"]]
        by_bin = {b["bin"]: b for b in baseline_bins}
        for row in project_bins or baseline_bins:
            other = by_bin.get(row["bin"], {})
            mine = row if project_bins else {}
            bins_rows.append(
                [
                    f"[{row['lower']:.2f}, {row['upper']:.2f}{']' if row['upper'] >= 1 else ')'}",
                    _cell(mine.get("n")),
                    _cell(mine.get("mean_predicted")),
                    _cell(mine.get("observed_rate")),
                    _cell(other.get("n")),
                    _cell(other.get("mean_predicted")),
                    _cell(other.get("observed_rate")),
                ]
            )
        bin_lines = _aligned(bins_rows)
        bin_lines.insert(1, "-" * len(bin_lines[0]))
        lines += ["", "calibration bins", *bin_lines]

    truth = result.get("truth")
    if truth:
        summary = ", ".join(f"{name.replace('_', ' ')}: {_cell(value)}" for name, value in truth.items())
        lines += ["", f"truth: {summary}"]
    return "\n".join(lines) + "\n"
