"""`attribution evaluate`: read the warehouse's outputs and the truth files, score them, project vs baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lab.evaluation import evaluate, format_report
from python_models.baseline import baseline_pick, strongest_confidence
from warehouse.client import Warehouse

TRUTH_FILES = ("truth_clicks", "truth_conversions")


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
    return result, format_report(result)
