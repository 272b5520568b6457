"""Daily partitions on conversion date (UTC), shared by the partitioned dbt models and Python assets."""

from __future__ import annotations

import dagster as dg

from orchestration.settings import SETTINGS

# The first day that can be attributed; older conversions stay in staging but are never partitioned.
PARTITIONS_START = SETTINGS.partitions_start

# end_offset=1 makes today's (still growing) day a partition, which the hourly job refreshes.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1, timezone="UTC")
