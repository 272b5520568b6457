"""Jobs: the whole pipeline, the hourly refresh of recent days, and the daily re-fit."""

import dagster as dg

from orchestration.assets.keys import (
    CHANNEL_WEIGHTS,
    DIM_IDENTITIES,
    IDENTITY_ADDED_NODES,
    IDENTITY_FORWARDS,
    IDENTITY_REPRESENTATIVES,
    INT_CHANNEL_FIT_WINDOW,
    INT_EVENT_IDENTITIES,
    INT_IDENTITIES,
    INT_IDENTITY_EDGES,
    INT_IDENTITY_INCREMENT_EDGES,
    INT_IDENTITY_INCREMENT_NODES,
    INT_IDENTITY_KEY_COLLISIONS,
    INT_IDENTITY_MAP,
    INT_IDENTITY_NODE_EDGES,
    INT_IDENTITY_NODES,
    INT_MATCH_CANDIDATES,
    INT_NON_CONVERTING_PATHS,
    INT_POPULARITY_MEMBERS,
    INT_POPULARITY_MEMBERS_NEW,
    MATCH_MODEL,
    RAW_TABLES,
    SIGNAL_WEIGHTS,
)
from orchestration.partitions import (
    IDENTITIES_MERGED,
    IDENTITIES_TAG,
    LEFT_UNTIL_DAILY,
    REPORTS_BY_WINDOW,
    REPORTS_TAG,
)

# Fitted once a day: identities (the graph and its naming and event assignment), the confidence model and the
# data-driven channel weights. The hourly job merges the new loads into the identity graph instead
# (IDENTITY_INCREMENT, then the graph asset and the events' identities, in its own mode and incrementally).
IDENTITY_GRAPH = dg.AssetSelection.assets(IDENTITY_REPRESENTATIVES, IDENTITY_ADDED_NODES, IDENTITY_FORWARDS)
IDENTITIES = IDENTITY_GRAPH | dg.AssetSelection.assets(INT_IDENTITIES, INT_IDENTITY_MAP, INT_EVENT_IDENTITIES)
MERGED_HOURLY = IDENTITY_GRAPH | dg.AssetSelection.assets(INT_EVENT_IDENTITIES)
# The identifiers and edges of the loads since the graph's mark: read by the hourly merge alone.
IDENTITY_INCREMENT = dg.AssetSelection.assets(INT_IDENTITY_INCREMENT_NODES, INT_IDENTITY_INCREMENT_EDGES)
# The channel weights' journeys (non-converting paths and the fit window) are read by the daily fit alone.
CHANNEL_FIT = dg.AssetSelection.assets(CHANNEL_WEIGHTS, INT_CHANNEL_FIT_WINDOW, INT_NON_CONVERTING_PATHS)
DAILY_FITTED = IDENTITIES | CHANNEL_FIT | dg.AssetSelection.assets(MATCH_MODEL, SIGNAL_WEIGHTS)
# Refreshed with the identities: the graph's inputs (edges, numbered nodes and node pairs, read by the identity graph
# only) and the identity profiles (built from identities; an hour's new clicks get theirs at the next re-fit).
# Rebuilding them from every click cost the hourly run ~75 s at 10M clicks without changing what it reports.
IDENTITY_COMPANIONS = dg.AssetSelection.assets(
    INT_IDENTITY_EDGES, INT_IDENTITY_NODES, INT_IDENTITY_KEY_COLLISIONS, INT_IDENTITY_NODE_EDGES, DIM_IDENTITIES
)
# The distinct members the candidates' popularity counts read, over every click: the hourly job adds its loads'
# pairs in INT_POPULARITY_MEMBERS_NEW instead (reading every click for the counts cost the hourly candidates a full
# scan of the clicks).
POPULARITY_MEMBERS = dg.AssetSelection.assets(INT_POPULARITY_MEMBERS)
# dbt source freshness of the raw tables: a dbt invocation of its own (~3-10 s), so it runs on its own schedule
# instead of adding that to every refresh; a stale feed is worth a look, never a reason to stop attributing.
RAW_FRESHNESS = dg.AssetSelection.checks_for_assets(*RAW_TABLES.values())
EVERYTHING = (dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks() - RAW_FRESHNESS) - IDENTITY_INCREMENT
# dbt's data tests on staging and the unpartitioned intermediate models read whole tables: they guard history, so
# the daily job and full runs run them. The hourly job keeps the checks of what it writes: the partitioned
# candidates and facts, the Python steps' scores and credits, and the marts BI reads.
_WHOLE_TABLE_MODELS = (
    dg.AssetSelection.groups("staging", "intermediate")
    - dg.AssetSelection.assets(INT_MATCH_CANDIDATES, INT_POPULARITY_MEMBERS_NEW)
    - IDENTITY_INCREMENT
)
HISTORY_CHECKS = _WHOLE_TABLE_MODELS - _WHOLE_TABLE_MODELS.without_checks()

ALL_ASSETS_JOB = dg.define_asset_job(
    "attribution_all",
    selection=EVERYTHING,
    description="Every asset: staging, identities, confidence, attribution and marts.",
)
HOURLY_JOB = dg.define_asset_job(
    "hourly_refresh",
    selection=(EVERYTHING | IDENTITY_INCREMENT)
    - (DAILY_FITTED - MERGED_HOURLY)
    - IDENTITY_COMPANIONS
    - POPULARITY_MEMBERS
    - HISTORY_CHECKS,
    description="New raw rows through staging, their identifiers and edges merged into the stored identities, then "
    "candidates, scores, credits and marts of recent days; the reports (and their shared numbers) are rebuilt for "
    "the run's days only. Left until the daily job, which rebuilds them all: " + "; ".join(LEFT_UNTIL_DAILY) + ".",
    # The run's days hold every day its loads can change (orchestration/schedules.py widens them for late data).
    tags={REPORTS_TAG: REPORTS_BY_WINDOW, IDENTITIES_TAG: IDENTITIES_MERGED},
)
DAILY_JOB = dg.define_asset_job(
    "daily_refit",
    selection=EVERYTHING,
    description="Re-resolve identities, re-fit the confidence model and channel weights, recompute the "
    "partitions within the lookback window.",
)

FRESHNESS_JOB = dg.define_asset_job(
    "check_raw_freshness",
    selection=RAW_FRESHNESS,
    description="dbt source freshness of raw.links, raw.clicks and raw.conversions, as asset checks.",
)

JOBS = [ALL_ASSETS_JOB, HOURLY_JOB, DAILY_JOB, FRESHNESS_JOB]
