"""Schedules: hourly refresh of today and yesterday, daily re-fit over the lookback window."""

from datetime import datetime, timedelta

import dagster as dg

from orchestration.assets.common import env_float
from orchestration.jobs import DAILY_JOB, HOURLY_JOB

LOOKBACK_DAYS = int(env_float("ATTRIBUTION_LOOKBACK_DAYS", 30.0))


def partition_range_tags(first: datetime, last: datetime) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.strftime("%Y-%m-%d"),
        "dagster/asset_partition_range_end": last.strftime("%Y-%m-%d"),
    }


@dg.schedule(job=HOURLY_JOB, cron_schedule="15 * * * *", execution_timezone="UTC")
def hourly_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Today's and yesterday's conversions (late clicks and conversions of yesterday still arrive)."""
    now = context.scheduled_execution_time
    return dg.RunRequest(
        run_key=f"hourly-{now:%Y-%m-%dT%H}",
        tags=partition_range_tags(now - timedelta(days=1), now),
    )


@dg.schedule(job=DAILY_JOB, cron_schedule="30 2 * * *", execution_timezone="UTC")
def daily_refit_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every partition a re-fit can change: conversions within the lookback window."""
    now = context.scheduled_execution_time
    return dg.RunRequest(
        run_key=f"daily-{now:%Y-%m-%d}",
        tags=partition_range_tags(now - timedelta(days=LOOKBACK_DAYS), now),
    )


SCHEDULES = [hourly_refresh_schedule, daily_refit_schedule]
