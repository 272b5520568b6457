"""Match confidence: fit the model daily on direct-click labels, score candidate pairs per day partition."""

from functools import partial

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.assets.common import (
    OWNERS,
    PYTHON_SCHEMA,
    date_where,
    partition_dates,
    png_metadata,
    refresh_scope_metadata,
    table_metadata,
)
from orchestration.assets.keys import INT_MATCH_CANDIDATES, MATCH_MODEL, MATCH_SCORES, SIGNAL_WEIGHTS
from orchestration.partitions import DAILY_PARTITIONS
from orchestration.resources import WarehouseResource
from orchestration.settings import SETTINGS, PipelineSettings
from python_models.calibration import calibration_bins, expected_calibration_error
from python_models.confidence import (
    MatchModel,
    MatchModelConfig,
    fit_match_model,
    fit_window_start,
    model_from_frame,
    model_to_frame,
    score_candidates,
    signal_weights,
)
from python_models.confidence.shift import SMD_LIMIT, UNSUPPORTED_LIMIT, label_shift
from python_models.steps import scored_pairs


def _calibration_plot(bins: pd.DataFrame) -> dg.MetadataValue:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    filled = bins.loc[bins["n"] > 0]
    ax.plot(filled["mean_predicted"], filled["observed_rate"], marker="o", label="held-out labels")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title("Match-probability calibration")
    ax.legend(loc="upper left")
    value = png_metadata(fig)
    plt.close(fig)
    return value


def weak_pair_scorer(model: MatchModel, config: MatchModelConfig) -> str:
    """What scored the pairs sharing only an IP or a fingerprint, and why, for the asset's metadata."""
    if model.weak is not None:
        return "Fellegi-Sunter EM"
    if not model.is_learned:
        return "fixed priors (too few labelled conversions)"
    if not config.weak_model:
        return "fixed priors (ATTRIBUTION_WEAK_PAIR_MODEL=priors)"
    m = model.metrics
    if m.get("weak_pairs", 0) < config.weak_min_pairs:
        return f"fixed priors (EM needs {config.weak_min_pairs:,} weak-only pairs, had {int(m.get('weak_pairs', 0)):,})"
    if m.get("weak_anchor_pairs", 0) < config.weak_min_anchors:
        return f"fixed priors (EM needs {config.weak_min_anchors:,} anchor pairs, had {int(m['weak_anchor_pairs']):,})"
    return f"fixed priors (EM fit implausible: match rate {m.get('weak_lambda', float('nan')):.3f})"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            MATCH_MODEL,
            deps=[INT_MATCH_CANDIDATES],
            description=(
                "The fitted match-confidence model (learned from direct-click labels, calibrated). If the "
                "calibration check fails: look at the calibration plot and labelled_conversions in the metadata; a "
                "drop in labels (direct click ids) usually means a tracking change upstream. Rerun after fixing it."
            ),
            group_name="confidence",
            owners=OWNERS,
            kinds={"python", "scipy"},
        ),
        dg.AssetSpec(
            SIGNAL_WEIGHTS,
            deps=[MATCH_MODEL],
            description="Learned weight of every signal beside the old fixed prior, with label counts.",
            group_name="confidence",
            owners=OWNERS,
            kinds={"python"},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "calibration_on_direct_click_labels",
            asset=MATCH_MODEL,
            blocking=True,
            description=f"Held-out expected calibration error on direct-click labels ≤ {SETTINGS.max_label_ece}.",
        ),
        dg.AssetCheckSpec(
            "labels_represent_conversions",
            asset=MATCH_MODEL,
            blocking=False,
            description=(
                "The conversions with a direct click id (the labels) resemble the others: largest standardised "
                f"mean difference of a best-candidate feature ≤ {SMD_LIMIT} and ≤ {UNSUPPORTED_LIMIT:.0%} of "
                "unlabelled conversions with a signal pattern the labels (almost) never show. A warning means the "
                "calibration is extrapolated to the unlabelled conversions."
            ),
        ),
    ],
    pool="warehouse",
)
def match_model(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: dg.ResourceParam[PipelineSettings]
):
    wh = warehouse.get()
    with wh.connect() as conn:
        last = wh.scalar("select max(conversion_date) from intermediate.int_match_candidates", conn)
        where = "1 = 1"
        if last is not None:
            start = pd.Timestamp(last) - pd.Timedelta(days=settings.fit_window_days)
            where = f"conversion_date > cast('{start.date().isoformat()}' as date)"
        # Bounded whatever the traffic: the newest days of the window up to fit_max_pairs candidate pairs.
        pairs_per_day = wh.query_df(
            "select conversion_date, count(*) as pairs from intermediate.int_match_candidates "
            f"where {where} group by conversion_date",
            conn,
        )
        first_day = fit_window_start(pairs_per_day, settings.fit_max_pairs)
        if first_day is not None:
            where = f"conversion_date >= cast('{pd.Timestamp(first_day).date().isoformat()}' as date)"
        candidates = wh.query_df(f"select * from intermediate.int_match_candidates where {where}", conn)
    config = settings.match_model_config()
    model = fit_match_model(candidates, config)
    weights = signal_weights(model)
    # One transaction: the model and the weights it explains are replaced together or not at all.
    with wh.transaction() as conn:
        wh.replace_table(model_to_frame(model), PYTHON_SCHEMA, "match_model", conn)
        wh.replace_table(weights, PYTHON_SCHEMA, "signal_weights", conn)

    holdout = model.holdout
    scores = score_candidates(candidates, model) if len(candidates) else None
    shift, shift_summary = label_shift(candidates, scores)
    if shift_summary["extrapolating"]:
        context.log.warning(
            "match model: labelled conversions differ from the unlabelled ones (largest |SMD| "
            f"{shift_summary['max_abs_smd']:.2f}, unsupported share {shift_summary['unsupported_share']:.1%}); "
            "confidence on conversions without a click id rests on extrapolation"
        )
    metadata: dict[str, object] = {
        "candidate_pairs": len(candidates),
        "fit_days": int(candidates["conversion_date"].nunique()) if len(candidates) else 0,
        "fit_window_days": settings.fit_window_days,
        "fit_max_pairs": settings.fit_max_pairs,
        "labelled_conversions": int(model.n_labelled_conversions),
        "fitted_from": "priors (too few labels)" if model.used_priors else "direct-click labels",
        "weak_only_pairs": int(model.metrics.get("weak_pairs", 0)),
        "weak_only_pairs_scored_by": weak_pair_scorer(model, config),
        "signal_weights": table_metadata(weights),
        "label_shift": table_metadata(shift.replace([np.inf, -np.inf], np.nan).round(4)),
        "label_shift_max_abs_smd": float(min(shift_summary["max_abs_smd"], 1e9)),
        "unlabelled_unsupported_share": shift_summary["unsupported_share"],
    }
    ece = None
    if holdout is not None and len(holdout):
        bins = calibration_bins(holdout["probability"].to_numpy(), holdout["label"].to_numpy())
        ece = expected_calibration_error(holdout["probability"].to_numpy(), holdout["label"].to_numpy())
        metadata["holdout_ece"] = ece
        metadata["calibration_plot"] = _calibration_plot(bins)
        metadata["calibration_bins"] = table_metadata(bins)
    yield dg.MaterializeResult(asset_key=MATCH_MODEL, metadata=metadata)
    yield dg.MaterializeResult(asset_key=SIGNAL_WEIGHTS, metadata={"dagster/row_count": len(weights)})
    yield dg.AssetCheckResult(
        check_name="labels_represent_conversions",
        asset_key=MATCH_MODEL,
        passed=not shift_summary["extrapolating"],
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"labelled vs unlabelled conversions: largest |SMD| {shift_summary['max_abs_smd']:.2f} (limit "
            f"{SMD_LIMIT}), {shift_summary['unsupported_share']:.1%} of unlabelled conversions outside the labels' "
            f"support (limit {UNSUPPORTED_LIMIT:.0%})"
        ),
        metadata={k: float(min(v, 1e9)) for k, v in shift_summary.items()},
    )
    if ece is None:
        yield dg.AssetCheckResult(
            check_name="calibration_on_direct_click_labels",
            asset_key=MATCH_MODEL,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"note": "no held-out labels: the model uses the fixed priors"},
        )
    else:
        yield dg.AssetCheckResult(
            check_name="calibration_on_direct_click_labels",
            asset_key=MATCH_MODEL,
            passed=ece <= settings.max_label_ece,
            description=(
                f"intermediate.match_model: held-out calibration error {ece:.3f} on "
                f"{len(holdout):,} labelled pairs (limit {settings.max_label_ece})"
            ),
            metadata={"holdout_ece": ece, "threshold": settings.max_label_ece},
        )


# On Spark the scores stay on the executors: the metadata is aggregated from the rows written for the window.
SCORE_SUMMARY_SQL = """
select count(*) as n, avg(match_probability) as mean_probability,
    coalesce(sum(case when match_probability >= 0.5 then 1 else 0 end), 0) as above_half,
    coalesce(sum(case when match_probability between 0 and 1 then 0 else 1 end), 0) as outside
from intermediate.match_scores where {where}
"""


@dg.asset(
    key=MATCH_SCORES,
    deps=[INT_MATCH_CANDIDATES, MATCH_MODEL],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="confidence",
    owners=OWNERS,
    kinds={"python", "pandas"},
    description=(
        "Calibrated P(click made by the converting person) for every candidate pair, per conversion day. "
        "Rebuilt by partition: backfill the days of a late load or after a model re-fit."
    ),
    check_specs=[dg.AssetCheckSpec("probabilities_in_unit_interval", asset=MATCH_SCORES, blocking=True)],
    pool="warehouse",
)
def match_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    wh = warehouse.get()
    window = partition_dates(context)
    where = date_where("conversion_date", window)
    with wh.connect() as conn:
        # The model is small: read on the driver, it travels with the scoring function to every group.
        model = model_from_frame(wh.query_df("select * from intermediate.match_model", conn))
        scores = wh.map_groups(
            {"match_scores": partial(scored_pairs, model)},
            [f"select * from intermediate.int_match_candidates where {where}"],
            key="conversion_date",
            schema=PYTHON_SCHEMA,
            conn=conn,
        ).rows["match_scores"]
    wh.replace_rows(scores, PYTHON_SCHEMA, "match_scores", where)
    if isinstance(scores, pd.DataFrame):
        p = scores["match_probability"]
        n, mean = len(scores), float(p.mean()) if len(p) else 0.0
        above, outside = int((p >= 0.5).sum()), int(((p < 0) | (p > 1) | p.isna()).sum())
    else:
        summary = wh.query_df(SCORE_SUMMARY_SQL.format(where=where)).iloc[0]
        n, mean = int(summary["n"]), float(summary["mean_probability"]) if summary["n"] else 0.0
        above, outside = int(summary["above_half"]), int(summary["outside"])
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "mean_probability": mean,
            "pairs_above_0.5": above,
            **refresh_scope_metadata(context),
        }
    )
    yield dg.AssetCheckResult(
        check_name="probabilities_in_unit_interval",
        passed=outside == 0,
        metadata={"outside_or_missing": outside},
        description=f"intermediate.match_scores: {outside} of {n} probabilities outside [0, 1] or missing",
    )
