"""Jobs: the whole pipeline; schedules and sensors target subsets of it."""

import dagster as dg

ALL_ASSETS_JOB = dg.define_asset_job(
    "attribution_all",
    selection=dg.AssetSelection.all(),
    description="Every asset: staging, identities, confidence, attribution and marts.",
)

JOBS = [ALL_ASSETS_JOB]
