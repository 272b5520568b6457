"""Confidence-weighted multi-touch attribution: touch selection, eight models, credits to the cent.

Input is one row per (conversion, candidate click) with a calibrated ``match_probability`` p = P(the click was
made by the converting person). Every model gives each touch a model weight w (first/last/linear/time decay/
position based) and splits the conversion as

    U       = prod over distinct click identities k of (1 - max_{i in k} p_i)      (unattributed share)
    share_i = (1 - U) * w_i p_i / sum_j w_j p_j

The data-driven models (Markov, Shapley) split (1 - U) over the conversion's distinct grain values by a fitted
allocation weight a_c, then within a value by p: share_i = (1 - U) * a_c / sum_{c' in conversion} a_c' *
p_i / sum_{j in c} p_j, with a chosen so that the credits per grain value add up to the fit's totals
(:mod:`python_models.attribution.allocation`).

U is the probability that none of the touches was made by the converter. Clicks of the same identity are the
same person, so they are one piece of evidence, not independent draws: within an identity only the most
probable click counts (clicks without an identity are their own identity). U is taken over the selected
touches (after the probability floor, lookback and repeat collapsing), so evidence below the floor stays
unattributed rather than being credited to nobody in particular. ``rule_based`` is the original
app's fixed-confidence rule (:mod:`python_models.baseline`): the picked click gets ``confidence``, the rest
stays unattributed.

Revenue credits are rounded to cents with the largest-remainder method per conversion and model (ties: the
attributed rows by ``click_id``, the unattributed row last), so per model the credits, unattributed included,
add up to each conversion's revenue in cents exactly.

Everything here works conversion by conversion once Markov / Shapley weights are given, so ``attribute`` can
run on the whole history, one day partition or one group of a distributed ``groupby().apply`` and give the
same rows. Pure functions: no I/O, no Dagster, dbt or database imports.
"""

from python_models.attribution.allocation import reconciled_totals, reconciling_weights
from python_models.attribution.config import (
    BASELINE_MODEL,
    DATA_DRIVEN_MODELS,
    DEFAULT_CONFIG,
    GRAINS,
    MODELS,
    OUTPUT_COLUMNS,
    PATH_COLUMNS,
    PATH_SEPARATOR,
    RULE_MODELS,
    TOUCH_COLUMNS,
    UNKNOWN_GRAIN,
    WEIGHT_COLUMNS,
    AttributionConfig,
)
from python_models.attribution.credits import allocate_cents, attribute
from python_models.attribution.data_driven import DataDrivenFit, fit_data_driven
from python_models.attribution.markov import fit_markov, markov_transitions
from python_models.attribution.paths import (
    combine_paths,
    conversion_paths,
    empty_paths,
    null_paths,
    null_paths_from_keys,
)
from python_models.attribution.rules import confidence_shares, grain_shares, grain_values, rule_weights
from python_models.attribution.shapley import fit_shapley, shapley_from_rates
from python_models.attribution.touches import last_touch_pick, select_touches, unattributed_share

__all__ = [
    "AttributionConfig",
    "BASELINE_MODEL",
    "DATA_DRIVEN_MODELS",
    "DEFAULT_CONFIG",
    "DataDrivenFit",
    "GRAINS",
    "MODELS",
    "OUTPUT_COLUMNS",
    "PATH_COLUMNS",
    "PATH_SEPARATOR",
    "RULE_MODELS",
    "TOUCH_COLUMNS",
    "UNKNOWN_GRAIN",
    "WEIGHT_COLUMNS",
    "allocate_cents",
    "attribute",
    "combine_paths",
    "confidence_shares",
    "conversion_paths",
    "empty_paths",
    "fit_data_driven",
    "fit_markov",
    "fit_shapley",
    "grain_shares",
    "grain_values",
    "last_touch_pick",
    "markov_transitions",
    "null_paths",
    "null_paths_from_keys",
    "reconciled_totals",
    "reconciling_weights",
    "rule_weights",
    "select_touches",
    "shapley_from_rates",
    "unattributed_share",
]
