"""Daily partitions on conversion date (UTC), shared by the partitioned dbt models and Python assets."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from orchestration.settings import SETTINGS

# The first day that can be attributed; older conversions stay in staging but are never partitioned.
PARTITIONS_START = SETTINGS.partitions_start

# end_offset=1 makes today's (still growing) day a partition, which the hourly job refreshes.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1, timezone="UTC")

# The run tag by which a job has the reports (and their shared numbers) rebuilt for the run's partition window only,
# and its value (orchestration/dbt.py passes that window to the reports' dbt stage).
REPORTS_TAG, REPORTS_BY_WINDOW = "attribution/reports", "run_window"

# The run tag by which a job has the identity asset merge the new loads' identifiers into the stored identities
# instead of re-fitting them (the hourly job), and its value.
IDENTITIES_TAG, IDENTITIES_MERGED = "attribution/identities", "merge_new_loads"

# What a run tagged REPORTS_BY_WINDOW (the hourly job) reads as the last daily job left it instead of refreshing:
# the job's description and every materialization of such a run name it.
LEFT_UNTIL_DAILY = (
    "re-splitting identities: the hourly merge unites the new loads' identifiers and edges with the stored "
    "identities within the per-identity limits and never cuts one (the re-fit resolves every edge again)",
    "the identity names and identifier map (int_identity_map) and the identity profiles (dim_identities)",
    "candidates, scores and credits on days before the run's days of identities a merge joined",
    "edges of an event's earlier version or of a click a later click flags as a bot",
    "the popularity members (int_popularity_members) of clicks whose version or bot flag changed since the daily job",
    "the match model, signal weights and channel weights",
    "unique_identities on report days before the run's days",
    "a re-delivered link's creator, campaign and channel on older days of rpt_link_daily",
    "the calibration bins of rpt_attribution_quality on days before the run's days, whose labels read the identities",
    "the data tests on staging and the unpartitioned intermediate tables, which read whole tables",
    "the reports' uniqueness tests on days before the run's days",
)


def run_partition_window(tags: Mapping[str, str]) -> dg.TimeWindow | None:
    """The time window of the daily partitions a run covers, from its range or single-partition tags; None for a
    run over no partitions."""
    first = tags.get("dagster/asset_partition_range_start") or tags.get("dagster/partition")
    last = tags.get("dagster/asset_partition_range_end") or tags.get("dagster/partition")
    if not first or not last:
        return None
    return dg.TimeWindow(
        DAILY_PARTITIONS.time_window_for_partition_key(first).start,
        DAILY_PARTITIONS.time_window_for_partition_key(last).end,
    )
