"""`attribution evaluate`: read the warehouse's outputs and the truth files, score them, project vs baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab.evaluation import evaluate, format_report
from python_models.baseline import baseline_pick, strongest_confidence
from warehouse.client import Warehouse

TRUTH_FILES = ("truth_clicks", "truth_conversions")
# Identifiers a click and a conversion can share (besides the conversion's direct click id).
SHARED_KEYS = ("user_id", "email_hash", "cookie_id", "session_id", "device_fingerprint", "ip_hash")


def candidate_recall(
    truth_conversions: pd.DataFrame,
    candidates: pd.DataFrame,
    click_keys: pd.DataFrame,
    conversion_keys: pd.DataFrame,
) -> dict[str, Any]:
    """Share of conversions whose true last click is a match candidate, over those whose true last click shares
    at least one identifier (or the direct click id) with the conversion: the clicks blocking could find."""
    has_click = truth_conversions["true_last_click_id"].notna()
    truth = truth_conversions.loc[has_click, ["conversion_id", "true_last_click_id"]]
    truth = truth.astype({"conversion_id": str, "true_last_click_id": str})
    conv = conversion_keys.drop_duplicates("conversion_id").astype({"conversion_id": str})
    clicks = click_keys.drop_duplicates("click_id").astype({"click_id": str})
    joined = truth.merge(conv, on="conversion_id", how="inner").merge(
        clicks, left_on="true_last_click_id", right_on="click_id", how="inner", suffixes=("_conv", "_click")
    )
    shares = joined["direct_click_id"].astype(str).eq(joined["true_last_click_id"])
    for key in SHARED_KEYS:
        a, b = joined[f"{key}_conv"], joined[f"{key}_click"]
        shares |= (a.notna() & b.notna() & (a.astype(str) == b.astype(str))).to_numpy()
    pairs = set(zip(candidates["conversion_id"].astype(str), candidates["click_id"].astype(str), strict=True))
    found = np.fromiter(
        ((c, k) in pairs for c, k in zip(joined["conversion_id"], joined["true_last_click_id"], strict=True)),
        dtype=bool,
        count=len(joined),
    )
    n = int(shares.sum())
    return {
        "conversions_with_shared_signal": n,
        "true_last_click_in_candidates": int((found & shares).sum()),
        "recall": float((found & shares).sum() / n) if n else float("nan"),
        "true_last_clicks_without_shared_signal": int((~shares).sum()),
    }


def read_truth(folder: Path) -> dict[str, pd.DataFrame]:
    frames = {}
    for name in TRUTH_FILES:
        path = folder / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path}: truth file missing (written by `attribution generate`)")
        frames[name] = pd.read_parquet(path)
    return frames


def read_outputs(wh: Warehouse) -> dict[str, pd.DataFrame]:
    with wh.connect() as conn:
        return {
            "conversion_attribution": wh.query_df(
                "select conversion_id, attributed_link_id, attributed_click_id, candidate_link_id, confidence_score, "
                "is_attributed "
                "from marts.fct_conversion_attribution",
                conn,
            ),
            "credits": wh.query_df(
                "select conversion_id, model, click_id, link_id, credit_share, is_unattributed "
                "from marts.fct_attribution_credits where model in ('linear', 'rule_based')",
                conn,
            ),
            "candidates": wh.query_df("select * from intermediate.int_match_candidates", conn),
            "match_scores": wh.query_df(
                "select conversion_id, click_id, match_probability as probability from intermediate.match_scores",
                conn,
            ),
            "click_identities": wh.query_df(
                "select event_id as click_id, identity_id from intermediate.int_event_identities "
                "where event_kind = 'click'",
                conn,
            ),
            # Identifiers of every human click and every conversion, to know which true last clicks share one.
            "click_keys": wh.query_df(
                f"select click_id, {', '.join(SHARED_KEYS)} from intermediate.int_clicks",
                conn,
            ),
            "conversion_keys": wh.query_df(
                f"select conversion_id, direct_click_id, {', '.join(SHARED_KEYS)} from staging.stg_raw__conversions",
                conn,
            ),
            "clicks": wh.query_df(
                "select c.click_id, c.is_bot, c.cookie_id, s.is_bot as is_bot_row_rules "
                "from intermediate.int_clicks c join staging.stg_raw__clicks s on s.click_id = c.click_id",
                conn,
            ),
        }


def evaluate_warehouse(wh: Warehouse, truth_dir: Path) -> tuple[dict[str, Any], str]:
    truth = read_truth(truth_dir)
    out = read_outputs(wh)
    clicks = out["clicks"]
    candidates = out["candidates"]
    # The old app's pair probability: the fixed confidence of the strongest signal a pair shares.
    baseline_pairs = candidates[["conversion_id", "click_id"]].assign(probability=strongest_confidence(candidates))
    result = evaluate(
        out["conversion_attribution"],
        out["credits"],
        baseline_pick(candidates),
        out["click_identities"],
        clicks[["click_id", "is_bot"]],
        truth["truth_clicks"],
        truth["truth_conversions"],
        click_cookies=clicks[["click_id", "cookie_id"]],
        # The old app only had user-agent rules; our behavioural rules are part of what is measured.
        baseline_clicks_flagged=clicks[["click_id", "is_bot_row_rules"]].rename(columns={"is_bot_row_rules": "is_bot"}),
        pair_scores=out["match_scores"],
        baseline_pair_scores=baseline_pairs,
    )
    result["project"]["candidates"] = candidate_recall(
        truth["truth_conversions"], candidates, out["click_keys"], out["conversion_keys"]
    )
    return result, format_report(result)
