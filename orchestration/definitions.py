"""The Dagster code location: it only assembles what the domain modules define."""

import dagster as dg

from orchestration.assets import EXTERNAL_ASSETS, PYTHON_ASSETS, build_raw_checks
from orchestration.dbt import build_dbt_assets, make_dbt_project
from orchestration.jobs import JOBS
from orchestration.resources import executor_for, make_resources
from orchestration.schedules import SCHEDULES
from orchestration.sensors import SENSORS
from orchestration.settings import SETTINGS
from warehouse.target import export_target, resolve_target

target = resolve_target()
export_target(target)
dbt_project = make_dbt_project(target.name)

defs = dg.Definitions(
    assets=[*EXTERNAL_ASSETS, *build_dbt_assets(dbt_project), *PYTHON_ASSETS],
    asset_checks=build_raw_checks(dbt_project),
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=make_resources(target, dbt_project, SETTINGS),
    executor=executor_for(target),
)
