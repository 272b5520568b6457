"""Daily partitions on conversion date (UTC), shared by the partitioned dbt models and Python assets."""

from __future__ import annotations

import os

import dagster as dg

# The first day that can be attributed; older conversions stay in staging but are never partitioned.
PARTITIONS_START = os.environ.get("ATTRIBUTION_PARTITIONS_START", "2026-01-01")

# end_offset=1 makes today's (still growing) day a partition, which the hourly job refreshes.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1, timezone="UTC")
