"""Schedules: hourly refresh of recent days, daily re-fit over the lookback window; both also recompute every
partition that raw data loaded since the last covering run can change (late clicks and conversions).

A run *covers* the raw loads up to a stamp when its partition range includes every partition those loads can
change; it says so with the tags below. The next tick starts from the newest stamp of a *successful* covering run,
so a failed or crashed run leaves its loads to the next tick, and runs that cover nothing in particular (a backfill,
the landing sensor's refresh of recent days) are simply not counted.
"""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from orchestration.jobs import DAILY_JOB, FRESHNESS_JOB, HOURLY_JOB
from orchestration.partitions import PARTITIONS_START
from orchestration.settings import SETTINGS
from warehouse.client import Warehouse
from warehouse.loader import LoadedEventDays, event_days_loaded_after, newest_load
from warehouse.target import resolve_target

LOOKBACK_DAYS = SETTINGS.lookback_days
COVERS_TAG = "attribution/covers_raw_loads"
COVERED_THROUGH_TAG = "attribution/raw_loads_covered_through"


def partition_range_tags(first: date, last: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.strftime("%Y-%m-%d"),
        "dagster/asset_partition_range_end": last.strftime("%Y-%m-%d"),
    }


def coverage_tags(covered_through: datetime | None) -> dict[str, str]:
    """Tags of a run whose partition range covers every raw load up to ``covered_through``."""
    if covered_through is None:
        return {}
    return {COVERS_TAG: "true", COVERED_THROUGH_TAG: covered_through.isoformat()}


def loads_covered_through(instance: dg.DagsterInstance) -> datetime | None:
    """Newest raw load that a successful covering run included (None: no such run, every load is new)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS], tags={COVERS_TAG: "true"}), limit=50
    )
    # Runs may finish out of order (PostgreSQL runs overlap): the newest stamp among recent successes counts.
    stamps = [datetime.fromisoformat(r.dagster_run.tags[COVERED_THROUGH_TAG]) for r in records]
    return max(stamps, default=None)


def first_affected_day(days: LoadedEventDays, lookback_days: int, partitions_start: date) -> date | None:
    """The earliest conversion day that newly loaded events can change, or None when they change none.

    A conversion is its own day; a click is a candidate for conversions up to ``lookback_days`` after it. Raw
    dates are written with any UTC offset, hence one day of margin before each.
    """
    relevant = [d for d in days.conversions if d >= partitions_start - timedelta(days=1)]
    relevant += [d for d in days.clicks if d + timedelta(days=lookback_days + 1) >= partitions_start]
    if not relevant:
        return None
    return max(min(relevant) - timedelta(days=1), partitions_start)


def refresh_range(now: datetime, recent_days: int, first_affected: date | None) -> tuple[date, date]:
    """From ``recent_days`` before today (or the first affected day, if earlier) through today."""
    today = now.astimezone(UTC).date()
    start = today - timedelta(days=recent_days)
    if first_affected is not None:
        start = min(start, first_affected)
    return start, today


def refresh_tags(wh: Warehouse, instance: dg.DagsterInstance | None, now: datetime, recent_days: int) -> dict[str, str]:
    """Range and coverage tags of a scheduled refresh: recent days plus what loads since the last coverage change.

    On DuckDB a tick that finds the file held by a running run fails with the lock error; nothing is lost, the
    next tick starts from the same covered stamp (it lives in the run history, not in the tick).
    """
    with wh.connect() as conn:
        # Read the newest stamp first: a load that commits while this runs is newer, so the next tick takes it.
        newest = newest_load(wh, conn)
        covered = loads_covered_through(instance) if instance is not None else None
        days = event_days_loaded_after(wh, covered, conn)
    first = first_affected_day(days, LOOKBACK_DAYS, date.fromisoformat(PARTITIONS_START))
    return {**partition_range_tags(*refresh_range(now, recent_days, first)), **coverage_tags(newest)}


def _now(context: dg.ScheduleEvaluationContext) -> datetime:
    return context.scheduled_execution_time or datetime.now(UTC)


def _instance(context: dg.ScheduleEvaluationContext) -> dg.DagsterInstance | None:
    # A context built without a persistent instance (a test) has no run history: every load counts as new.
    return context.instance if context.instance_ref is not None else None


@dg.schedule(job=HOURLY_JOB, cron_schedule="15 * * * *", execution_timezone="UTC")
def hourly_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Today's and yesterday's conversions, and every partition that late raw data can change."""
    now = _now(context)
    return dg.RunRequest(
        run_key=f"hourly-{now:%Y-%m-%dT%H}",
        tags=refresh_tags(Warehouse(resolve_target()), _instance(context), now, recent_days=1),
    )


@dg.schedule(job=DAILY_JOB, cron_schedule="30 2 * * *", execution_timezone="UTC")
def daily_refit_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Every partition a re-fit can change (conversions within the lookback window), and late data's."""
    now = _now(context)
    return dg.RunRequest(
        run_key=f"daily-{now:%Y-%m-%d}",
        tags=refresh_tags(Warehouse(resolve_target()), _instance(context), now, recent_days=LOOKBACK_DAYS),
    )


raw_freshness_schedule = dg.ScheduleDefinition(
    job=FRESHNESS_JOB, cron_schedule="5 * * * *", execution_timezone="UTC", description="dbt source freshness, hourly."
)

SCHEDULES = [hourly_refresh_schedule, daily_refit_schedule, raw_freshness_schedule]
