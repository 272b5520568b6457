"""dbt inside Dagster: the project, the translator and the dbt asset definitions.

The dbt models are split into asset definitions by *position* (folder and the ``partitioned`` and
``after_identity_graph`` / ``after_attribution`` tags), never by model name: staging + intermediate run before the
Python assets, the models that read the identity graph (naming, event identities, non-converting paths) right after
it, partitioned facts after attribution, then the remaining marts with the intermediate models they read.
Splitting this way keeps the combined graph acyclic while the UI still shows one lineage.
"""

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from orchestration.assets.common import OWNERS, refresh_scope_metadata
from orchestration.assets.keys import PUBLISHED_MARTS
from orchestration.dbt_in_process import newest_source_mtime
from orchestration.partitions import DAILY_PARTITIONS, REPORTS_BY_WINDOW, REPORTS_TAG, run_partition_window
from orchestration.publish import publish_marts_args
from orchestration.resources import WarehouseResource, dbt_cli
from warehouse.client import Warehouse, qualified
from warehouse.target import PROJECT_ROOT, resolve_target

DBT_PROFILES_DIR = PROJECT_ROOT / "dbt_project"


def make_dbt_project(target_name: str | None = None) -> DbtProject:
    name = target_name or resolve_target().name
    return DbtProject(
        project_dir=PROJECT_ROOT,
        profiles_dir=DBT_PROFILES_DIR,
        target=name,
        # The manifest renders target-specific config (grants, dispatch), so each target keeps its own.
        target_path=Path("target") / name,
    )


def ensure_manifest(project: DbtProject) -> Path:
    """Parse the dbt project when the manifest is missing or older than any dbt file (no connection needed)."""
    manifest = project.manifest_path
    if not manifest.exists() or manifest.stat().st_mtime < newest_source_mtime(PROJECT_ROOT):
        # What project.preparer.prepare does, with the dbt beside the interpreter instead of the one on PATH.
        dbt_cli(project, project.target or "duckdb").cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return manifest


class LayerTranslator(DagsterDbtTranslator):
    """Asset keys are ``<schema>/<name>``; groups come from the dbt folder (staging / intermediate / marts)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        meta_key = (dbt_resource_props.get("meta") or {}).get("dagster", {}).get("asset_key")
        if meta_key:
            return dg.AssetKey(meta_key)
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        schema = dbt_resource_props.get("schema") or _folder(dbt_resource_props)
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return _folder(dbt_resource_props)


def _folder(props: Mapping[str, Any]) -> str:
    fqn = props.get("fqn") or []
    # fqn = [project, folder, ..., name]; the first folder is the layer.
    return fqn[1] if len(fqn) > 2 else "dbt"


TRANSLATOR = LayerTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

# How a stage's models get the dbt vars partition_start / partition_end: from the stage's own daily partitions
# (PARTITIONS), from the run's partition window when the run's job asks for it (RUN_WINDOW: the reports' days,
# tag REPORTS_TAG, see orchestration/jobs.py), or never (None).
PARTITIONS, RUN_WINDOW = "partitions", "run_window"

# (name, select, exclude, window) — positions in the pipeline, selected by folder and tag only.
# The identity graph runs between the first two: its inputs (tag identity_graph) are built with staging, its naming
# and event assignment (tag after_identity_graph) read the Python asset's output and feed the partitioned candidates.
# Intermediate models that read the attribution facts (tag after_attribution: the reports' shared numbers) run in
# the last stage, with the marts that read them: dbt orders them within one invocation.
DBT_STAGES: tuple[tuple[str, str, str, str | None], ...] = (
    (
        "dbt_staging_intermediate",
        "staging intermediate",
        "tag:partitioned tag:after_identity_graph tag:after_attribution",
        None,
    ),
    ("dbt_after_identity_graph", "intermediate,tag:after_identity_graph", "tag:partitioned", None),
    ("dbt_intermediate_partitioned", "intermediate,tag:partitioned", "", PARTITIONS),
    ("dbt_marts_partitioned", "marts,tag:partitioned", "", PARTITIONS),
    ("dbt_marts", "marts intermediate,tag:after_attribution", "tag:partitioned", RUN_WINDOW),
)


def _selected_models(manifest: Mapping[str, Any], select: str, exclude: str) -> list[str]:
    """A small evaluator of the folder/tag selectors used in DBT_STAGES, to skip empty stages."""

    def matches(node: Mapping[str, Any], term: str) -> bool:
        return all(
            (part[4:] in node.get("tags", [])) if part.startswith("tag:") else (_folder(node) == part)
            for part in term.split(",")
        )

    out = []
    for uid, node in manifest.get("nodes", {}).items():
        if node.get("resource_type") not in {"model", "seed", "snapshot"}:
            continue
        if any(matches(node, t) for t in select.split()) and not (
            exclude and any(matches(node, t) for t in exclude.split())
        ):
            out.append(uid)
    return out


def dbt_vars_for(context: dg.AssetExecutionContext, window: str | None) -> dict[str, str]:
    if window == PARTITIONS and (context.has_partition_key_range or context.has_partition_key):
        bounds = context.partition_time_window
        return {"partition_start": bounds.start.isoformat(), "partition_end": bounds.end.isoformat()}
    if window == RUN_WINDOW and context.run.tags.get(REPORTS_TAG) == REPORTS_BY_WINDOW:
        run_window = run_partition_window(context.run.tags)
        if run_window is not None:
            return {"partition_start": run_window.start.isoformat(), "partition_end": run_window.end.isoformat()}
    return {}


def build_dbt_assets(project: DbtProject) -> list[dg.AssetsDefinition]:
    manifest_path = ensure_manifest(project)
    manifest = json.loads(manifest_path.read_text())
    defs: list[dg.AssetsDefinition] = []
    for name, select, exclude, window in DBT_STAGES:
        if not _selected_models(manifest, select, exclude):
            continue
        defs.append(_dbt_stage(project, manifest, name, select, exclude, window))
    marts = [TRANSLATOR.get_asset_key(manifest["nodes"][uid]) for uid in _selected_models(manifest, "marts", "")]
    if marts:
        defs.append(_publish_asset(project, manifest, marts))
    return defs


def _publish_asset(project: DbtProject, manifest: Mapping[str, Any], marts: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """The last step of every job: `dbt run-operation publish_marts` copies the marts into the snapshot BI reads
    (a DuckDB file swapped in by rename, or a PostgreSQL schema swapped or updated in one transaction): what the
    run's marts rewrote, or every mart. It depends on every mart, so a run whose marts failed publishes nothing
    and readers keep the previous complete snapshot."""

    @dg.asset(
        key=PUBLISHED_MARTS,
        deps=marts,
        group_name="marts",
        kinds={"dbt"},
        owners=OWNERS,
        description=(
            "The marts as BI reads them: a consistent snapshot of every mart, replaced at the end of each run "
            "(DuckDB: the .marts.duckdb file beside the warehouse; PostgreSQL: schema marts_published). A run copies "
            "what its marts rewrote (the days of the marts by day, the marts rebuilt whole) into the previous "
            "snapshot; the daily job and full runs copy every mart. Table publish_state says when it was published."
        ),
        pool="warehouse",
    )
    def published_marts(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        target = warehouse.get().target
        target_path = invocation_target_path(project, "publish_marts", context.run.run_id)
        with publish_marts_args(target, context.run.run_id) as args:
            invocation = dbt.cli(
                ["run-operation", "publish_marts", "--args", json.dumps(args)],
                manifest=manifest,
                target_path=target_path,
            )
            # The macro logs what it copied (every mart, or the run's changes); waiting is reading the events.
            copied = [
                message
                for event in invocation.stream_raw_events()
                if (message := str(event.raw_event["info"].get("msg", ""))).startswith("publish_marts:")
            ]
        return dg.MaterializeResult(
            metadata={
                "published": target.describe_published(),
                "marts": len(marts),
                "copied": copied[-1].removeprefix("publish_marts: ") if copied else "",
                **refresh_scope_metadata(context),
            },
        )

    return published_marts


def _dbt_stage(
    project: DbtProject, manifest: Mapping[str, Any], name: str, select: str, exclude: str, window: str | None
) -> dg.AssetsDefinition:
    partitioned = window == PARTITIONS
    views = frozenset(
        TRANSLATOR.get_asset_key(node)
        for node in manifest["nodes"].values()
        if node["config"].get("materialized") == "view"
    )

    @dbt_assets(
        manifest=manifest,
        select=select,
        exclude=exclude,
        name=name,
        project=project,
        dagster_dbt_translator=TRANSLATOR,
        partitions_def=DAILY_PARTITIONS if partitioned else None,
        # A backfill of any range is one dbt invocation over the whole window, not one per day.
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        pool="warehouse",
    )
    def _assets(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource) -> Iterator[Any]:
        # Unit tests check SQL logic on fixed inputs: they run in CI (pytest), not on every production build.
        args = ["build", "--exclude-resource-type", "unit_test"]
        dbt_vars = dbt_vars_for(context, window)
        if dbt_vars:
            args += ["--vars", json.dumps(dbt_vars)]
        if os.environ.get("ATTRIBUTION_DBT_FULL_REFRESH") == "1":
            args.append("--full-refresh")
        target_path = invocation_target_path(project, name, context.run.run_id)
        events = list(dbt.cli(args, context=context, target_path=target_path).stream())
        yield from with_row_counts(context, events, warehouse.get(), views)

    return _assets


def invocation_target_path(project: DbtProject, stage: str, run_id: str) -> Path:
    """A fresh target folder per dbt invocation (its run_results.json and compiled SQL) under the project's
    per-target folder, named by stage and run so an operator finds a step's artifacts from the run's id."""
    base = Path(project.project_dir) / project.target_path
    return base / f"{stage}-{run_id[:8]}-{uuid.uuid4().hex[:6]}"


def with_row_counts(
    context: dg.AssetExecutionContext, events: list[Any], wh: Warehouse, views: frozenset[dg.AssetKey]
) -> Iterator[Any]:
    """Add ``dagster/row_count`` to every materialized table, counted once dbt has finished, and the run's refresh
    scope (what an hourly run leaves as of the last daily job) to every materialization.

    dagster-dbt's own row counts query through an in-process dbt adapter, which opens the DuckDB file with a
    different configuration than ours (DuckDB refuses that within one process) and would race dbt's writer. Like
    dagster-dbt's, they leave out ``views`` (asset keys): counting a view runs its query, and at 10M clicks
    ``int_identifiers`` is every identifier of every click.
    """
    keys = {_event_key(context, e) for e in events} - {None} - views
    scope = refresh_scope_metadata(context)
    counts: dict[dg.AssetKey, int] = {}
    if keys:
        with wh.connect() as conn:
            for key in keys:
                schema, table = key.path[0], key.path[-1]
                if wh.table_exists(schema, table, conn):
                    counts[key] = int(wh.scalar(f"select count(*) from {qualified(schema, table)}", conn))
    for event in events:
        key = _event_key(context, event)
        if key is not None:
            rows = {"dagster/row_count": counts[key]} if key in counts else {}
            event = event.with_metadata({**(event.metadata or {}), **rows, **scope})
        yield event


def _event_key(context: dg.AssetExecutionContext, event: Any) -> dg.AssetKey | None:
    if isinstance(event, dg.Output):
        return context.asset_key_for_output(event.output_name)
    if isinstance(event, dg.AssetMaterialization):
        return event.asset_key
    return None
