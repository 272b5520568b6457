"""Sensors: failure alerting (log, and Sentry when SENTRY_DSN is set) and a landing folder for raw files."""

import logging
import os

import dagster as dg

from orchestration.jobs import HOURLY_JOB
from orchestration.settings import SETTINGS

log = logging.getLogger("attribution.alerts")
LANDING_DIR = SETTINGS.landing_dir


def failed_steps(context: dg.RunFailureSensorContext) -> list[str]:
    steps = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        steps.append(f"{event.step_key}: {error.message.strip() if error else 'unknown error'}")
    return steps


def report_to_sentry(message: str) -> bool:
    dsn = SETTINGS.sentry_dsn
    if not dsn:
        return False
    try:
        import sentry_sdk
    except ImportError:
        log.warning("SENTRY_DSN is set but sentry-sdk is not installed (install the 'sentry' extra)")
        return False
    sentry_sdk.init(dsn=dsn)
    sentry_sdk.capture_message(message, level="error")
    sentry_sdk.flush(timeout=5)
    return True


@dg.run_failure_sensor(
    name="log_run_failures", monitor_all_code_locations=False, default_status=dg.DefaultSensorStatus.RUNNING
)
def log_run_failures(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    steps = failed_steps(context)
    message = f"run {run.run_id} of job {run.job_name} failed: " + ("; ".join(steps) or context.failure_event.message)
    context.log.error(message)
    log.error(message)
    report_to_sentry(message)


@dg.sensor(job=HOURLY_JOB, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def landing_folder_sensor(context: dg.SensorEvaluationContext):
    """Load each new sub-folder of the landing folder, then refresh today's and yesterday's partitions."""
    from datetime import UTC, datetime, timedelta

    from orchestration.resources import WarehouseResource
    from orchestration.schedules import partition_range_tags
    from warehouse.loader import LoadError, load_folder

    if not LANDING_DIR.is_dir():
        return dg.SkipReason(f"{LANDING_DIR} does not exist")
    seen = set((context.cursor or "").split("\n")) - {""}
    new = sorted(p for p in LANDING_DIR.iterdir() if p.is_dir() and p.name not in seen)
    if not new:
        return dg.SkipReason("no new folders")
    wh = WarehouseResource(target=os.environ.get("ATTRIBUTION_TARGET", "duckdb")).get()
    loaded = []
    for folder in new:
        try:
            load_folder(wh, folder)
            loaded.append(folder.name)
        except LoadError as exc:
            context.log.error(f"landing folder {folder} refused: {exc}")
        seen.add(folder.name)
    context.update_cursor("\n".join(sorted(seen)))
    if not loaded:
        return dg.SkipReason("new folders were refused; see the sensor log")
    now = datetime.now(UTC)
    return dg.RunRequest(run_key="landing-" + ",".join(loaded), tags=partition_range_tags(now - timedelta(days=1), now))


SENSORS = [log_run_failures, landing_folder_sensor]
