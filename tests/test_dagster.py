"""The Dagster code location: it loads, validates, forms one lineage graph, and its schedules tick.

The webserver test starts `dagster dev` (webserver + daemon) on a free port, checks every asset over GraphQL and
launches a three-day backfill that must succeed — what an operator does from the UI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cli.runner import load_definitions, prepare_dagster_home, run_job
from lab.synthetic import WorldConfig, generate_world
from lab.world_files import write_world
from orchestration.assets.confidence import weak_pair_scorer
from orchestration.assets.keys import (
    ATTRIBUTION_CREDITS,
    IDENTITY_ADDED_NODES,
    IDENTITY_FORWARDS,
    IDENTITY_REPRESENTATIVES,
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
    INT_POPULARITY_MEMBERS,
    INT_POPULARITY_MEMBERS_NEW,
    MATCH_MODEL,
    MATCH_SCORES,
    PUBLISHED_MARTS,
    RAW_TABLES,
)
from orchestration.assets.raw import FRESHNESS_CHECK, freshness_results
from orchestration.jobs import ALL_ASSETS_JOB, DAILY_JOB, HOURLY_JOB
from orchestration.partitions import IDENTITIES_MERGED, IDENTITIES_TAG
from orchestration.schedules import daily_refit_schedule, hourly_refresh_schedule
from orchestration.settings import WEAK_PAIR_MODELS, PipelineSettings, dbt_var
from python_models.confidence import MatchModelConfig, fit_match_model, prior_model
from tests.conftest import graphql, make_target, module_target, serving
from tests.test_confidence import simulate_candidates
from warehouse.client import Warehouse
from warehouse.loader import load_folder
from warehouse.target import PROJECT_ROOT, Target, target_env

WORLD = WorldConfig(persons=250, seed=11, days=10)


@pytest.fixture
def duckdb_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Target:
    t = make_target("duckdb", tmp_path)
    for key, value in target_env(t).items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return t


def world_day(offset: int) -> datetime:
    return datetime.fromisoformat(WORLD.start).replace(tzinfo=UTC) + timedelta(days=offset)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_world(generate_world(WORLD), out)
    return out


def test_definitions_form_one_connected_lineage_graph(duckdb_target: Target) -> None:
    defs = load_definitions(duckdb_target)
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    expected = {
        ("raw", "clicks"),
        ("staging", "stg_raw__clicks"),
        ("intermediate", "int_match_candidates"),
        ("intermediate", "identity_representatives"),
        ("intermediate", "int_identity_map"),
        ("intermediate", "match_scores"),
        ("intermediate", "attribution_credits"),
        ("marts", "fct_attribution_credits"),
        ("marts", "rpt_channel_attribution"),
    }
    assert {tuple(k.path) for k in keys} >= expected
    # One weakly connected component: every asset reaches every other ignoring edge direction.
    neighbours: dict[dg.AssetKey, set[dg.AssetKey]] = {k: set() for k in keys}
    for key in keys:
        for parent in graph.get(key).parent_keys:
            if parent in neighbours:
                neighbours[key].add(parent)
                neighbours[parent].add(key)
    seen, frontier = set(), [next(iter(keys))]
    while frontier:
        node = frontier.pop()
        if node not in seen:
            seen.add(node)
            frontier.extend(neighbours[node] - seen)
    assert seen == keys, f"disconnected assets: {sorted(k.to_user_string() for k in keys - seen)}"
    # Groups come from the dbt folder, never from model names.
    assert graph.get(dg.AssetKey(["staging", "stg_raw__clicks"])).group_name == "staging"
    assert graph.get(dg.AssetKey(["marts", "fct_attribution_credits"])).group_name == "marts"


def test_publishing_the_marts_ends_every_pipeline_job(duckdb_target: Target) -> None:
    """BI reads the published snapshot: its asset depends on every mart (by folder, so new reports join it),
    nothing depends on it, and every job that builds marts publishes them."""
    defs = load_definitions(duckdb_target)
    graph = defs.resolve_asset_graph()
    marts = {key for key in graph.get_all_asset_keys() if key.path[0] == "marts"}
    published = graph.get(PUBLISHED_MARTS)
    assert marts and set(published.parent_keys) == marts
    assert not published.child_keys
    for job in (ALL_ASSETS_JOB, HOURLY_JOB, DAILY_JOB):
        assert PUBLISHED_MARTS in job.selection.resolve(graph), job.name


def test_identity_step_sits_between_its_dbt_stages_and_the_hourly_job_merges_instead_of_refitting(
    duckdb_target: Target,
) -> None:
    defs = load_definitions(duckdb_target)
    graph = defs.resolve_asset_graph()
    # Graph inputs (stage 1) -> the Python graph -> the naming models (their own stage) -> candidates.
    assert INT_IDENTITY_NODE_EDGES in graph.get(IDENTITY_REPRESENTATIVES).parent_keys
    assert IDENTITY_REPRESENTATIVES in graph.get(INT_IDENTITIES).parent_keys
    assert INT_EVENT_IDENTITIES in graph.get(INT_MATCH_CANDIDATES).parent_keys
    stage = {key: defs.resolve_assets_def(key).node_def.name for key in (INT_IDENTITY_NODES, INT_EVENT_IDENTITIES)}
    assert stage == {INT_IDENTITY_NODES: "dbt_staging_intermediate", INT_EVENT_IDENTITIES: "dbt_after_identity_graph"}
    # The re-fit's inputs and naming, which read every identifier: the daily job alone.
    refit = {INT_IDENTITY_EDGES, INT_IDENTITY_NODES, INT_IDENTITY_KEY_COLLISIONS, INT_IDENTITY_NODE_EDGES,
             INT_IDENTITIES, INT_IDENTITY_MAP}  # fmt: skip
    # The hourly merge: the new loads' identifiers and edges, the graph asset (in its merge mode, by the job's tag)
    # and the events' identities (incremental).
    increment = {INT_IDENTITY_INCREMENT_NODES, INT_IDENTITY_INCREMENT_EDGES}
    graph_and_events = {IDENTITY_REPRESENTATIVES, IDENTITY_ADDED_NODES, IDENTITY_FORWARDS, INT_EVENT_IDENTITIES}
    assert INT_IDENTITY_INCREMENT_EDGES in graph.get(IDENTITY_REPRESENTATIVES).parent_keys
    assert IDENTITY_FORWARDS in graph.get(INT_EVENT_IDENTITIES).parent_keys
    hourly, daily = HOURLY_JOB.selection.resolve(graph), DAILY_JOB.selection.resolve(graph)
    assert not hourly & refit, sorted(k.to_user_string() for k in hourly & refit)
    assert increment | graph_and_events | {INT_MATCH_CANDIDATES} <= hourly
    assert refit | graph_and_events <= daily and not daily & increment
    assert HOURLY_JOB.tags[IDENTITIES_TAG] == IDENTITIES_MERGED and IDENTITIES_TAG not in DAILY_JOB.tags
    # The popularity members of every click: rebuilt by the daily job; the hourly job adds its loads' pairs.
    assert {INT_POPULARITY_MEMBERS, INT_POPULARITY_MEMBERS_NEW} <= graph.get(INT_MATCH_CANDIDATES).parent_keys
    assert INT_POPULARITY_MEMBERS not in hourly and INT_POPULARITY_MEMBERS_NEW in hourly
    assert {INT_POPULARITY_MEMBERS, INT_POPULARITY_MEMBERS_NEW} <= daily


def test_hourly_job_checks_what_it_writes_and_leaves_whole_table_tests_to_the_daily_job(
    duckdb_target: Target,
) -> None:
    graph = load_definitions(duckdb_target).resolve_asset_graph()
    hourly = HOURLY_JOB.selection.resolve_checks(graph)
    daily = DAILY_JOB.selection.resolve_checks(graph)
    assert "staging" not in {k.asset_key.path[0] for k in hourly}
    # Of the dbt intermediate models only the partitioned candidates and the hour's increments (identities and
    # popularity members); the Python steps' and the marts' checks stay.
    assert {k.asset_key for k in hourly if k.asset_key.path[-1].startswith("int_")} == {
        INT_MATCH_CANDIDATES,
        INT_IDENTITY_INCREMENT_NODES,
        INT_POPULARITY_MEMBERS_NEW,
    }
    assert {MATCH_SCORES, ATTRIBUTION_CREDITS} <= {k.asset_key for k in hourly}
    assert any(k.asset_key.path[0] == "marts" for k in hourly)
    assert {k for k in hourly if k.asset_key != INT_IDENTITY_INCREMENT_NODES} < daily
    assert {k.asset_key.path[0] for k in daily} >= {"staging", "intermediate", "marts"}


def test_dagster_definitions_validate(duckdb_target: Target) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "orchestration.definitions"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_instance_commits_events_without_an_fsync_each_and_a_new_process_reads_them(
    duckdb_target: Target, tmp_path: Path
) -> None:
    """The dagster.yaml that `attribution` writes names the tuned SQLite storage: its connections commit at
    synchronous=NORMAL in WAL mode (1) over an engine kept per database, and the events it stored are there for
    another process (the UI's)."""
    from dagster._core.events.log import EventLogEntry

    from orchestration.instance_storage import HELD_DATABASES, LocalSqliteStorage

    home = prepare_dagster_home(duckdb_target, tmp_path / "dagster_home")
    instance = dg.DagsterInstance.get()
    storage = instance.get_ref().storage_data
    assert storage is not None and (storage.module_name, storage.class_name) == (
        LocalSqliteStorage.__module__,
        LocalSqliteStorage.__name__,
    )
    events = instance.event_log_storage
    for i in range(5):
        events.store_event(
            EventLogEntry(None, 20, f"event {i}", "run-a", time.time(), job_name="job", dagster_event=None)
        )
    with events.run_connection("run-a") as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
        engine = conn.engine
    # One engine per database for the storage's lifetime, the most recent HELD_DATABASES of them.
    with events.run_connection("run-a") as conn:
        assert conn.engine is engine
    for i in range(HELD_DATABASES + 2):
        entry = EventLogEntry(None, 20, "other", f"run-{i}", time.time(), job_name="job", dagster_event=None)
        events.store_event(entry)
    assert len(events._engines) == HELD_DATABASES
    reader = subprocess.run(
        [sys.executable, "-c", "import dagster as dg; print(len(dg.DagsterInstance.get().all_logs('run-a')))"],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        check=True,
    )
    assert reader.stdout.split()[-1] == "5", reader.stderr


@dataclass(frozen=True)
class Materialised:
    """A DuckDB warehouse holding the small world with every asset materialised by the daily re-fit's tick."""

    target: Target
    daily: dg.RunRequest
    hourly: dg.RunRequest
    daily_result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def materialised(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Materialised]:
    with module_target("duckdb", tmp_path_factory.mktemp("materialised")) as target:
        load_folder(Warehouse(target), small_world)
        # A tick at 03:00 UTC on the world's last day, so the ticks' partitions hold data.
        tick_time = world_day(WORLD.days - 1) + timedelta(hours=3)
        instance = dg.DagsterInstance.ephemeral()
        requests = {}
        for schedule in (daily_refit_schedule, hourly_refresh_schedule):
            request = schedule(dg.build_schedule_context(scheduled_execution_time=tick_time, instance=instance))
            assert isinstance(request, dg.RunRequest)
            requests[schedule.name] = request
        daily = requests["daily_refit_schedule"]
        # The daily re-fit materialises every asset (what an operator has before opening the UI). The hourly
        # tick's run is exercised on both targets by test_reliability (late data picked up by the next tick).
        result = run_job(target, daily_refit_schedule.job_name, tags=daily.tags, instance=instance)
        yield Materialised(target, daily, requests["hourly_refresh_schedule"], result)


def test_schedules_are_listed_and_each_tick_requests_its_window(materialised: Materialised) -> None:
    defs = load_definitions(materialised.target)
    assert {"hourly_refresh_schedule", "daily_refit_schedule"} <= {s.name for s in defs.schedules}
    result = materialised.daily_result
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    last_day = world_day(WORLD.days - 1).strftime("%Y-%m-%d")
    for request in (materialised.daily, materialised.hourly):
        start = request.tags["dagster/asset_partition_range_start"]
        end = request.tags["dagster/asset_partition_range_end"]
        assert start <= last_day <= end, request.tags
    # The re-fit recomputes the whole lookback; the hourly refresh only the days new data can change (here: all
    # of the world, loaded since no covering run).
    assert materialised.daily.tags["dagster/asset_partition_range_start"] <= world_day(0).strftime("%Y-%m-%d")


def test_match_model_metadata_says_what_scored_the_weak_only_pairs(materialised: Materialised) -> None:
    events = [e for e in materialised.daily_result.get_asset_materialization_events() if e.asset_key == MATCH_MODEL]
    assert len(events) == 1
    metadata = events[0].materialization.metadata
    # A 250-person world has too few labelled conversions to learn from, and says so for every region.
    assert metadata["fitted_from"].value == "priors (too few labels)"
    assert 0 < metadata["weak_only_pairs"].value < MatchModelConfig().weak_min_pairs
    assert metadata["weak_only_pairs_scored_by"].value == "fixed priors (too few labelled conversions)"


def test_raw_freshness_job_reports_dbt_source_freshness_per_raw_table(materialised: Materialised) -> None:
    """The freshness checks run dbt source freshness (the one definition) in a job of their own, not in refreshes."""
    result = run_job(materialised.target, "check_raw_freshness", instance=dg.DagsterInstance.ephemeral())
    assert result.success
    evaluations = {e.asset_key: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(RAW_TABLES.values())
    for evaluation in evaluations.values():
        assert evaluation.check_name == FRESHNESS_CHECK
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        # The world's events are in the past: dbt measures clicks and conversions on event time, links on load time.
        assert evaluation.metadata["status"].value in {"pass", "warn", "error"}
        assert evaluation.metadata["age_hours"].value >= 0
    assert evaluations[RAW_TABLES["links"]].passed  # loaded minutes ago, warn after 7 days
    refresh = load_definitions(materialised.target).resolve_job_def("hourly_refresh")
    assert not any(key.name == FRESHNESS_CHECK for key in refresh.asset_layer.asset_graph.asset_check_keys)


def test_freshness_results_map_dbt_statuses() -> None:
    sources = {
        "results": [
            {"unique_id": "source.link_attribution.raw.links", "status": "pass", "max_loaded_at_time_ago_in_s": 60},
            {"unique_id": "source.link_attribution.raw.clicks", "status": "error", "max_loaded_at_time_ago_in_s": 7200},
        ]
    }
    results = {r.asset_key: r for r in freshness_results(sources)}
    assert results[RAW_TABLES["links"]].passed
    assert not results[RAW_TABLES["clicks"]].passed
    assert results[RAW_TABLES["clicks"]].metadata["age_hours"].value == 2.0
    assert not results[RAW_TABLES["conversions"]].passed  # dbt reported nothing: a warning that says so
    assert "reported nothing" in results[RAW_TABLES["conversions"]].metadata["reason"].value


def test_weak_pair_scorer_names_the_scorer_and_why_not_em() -> None:
    frame = simulate_candidates(3000, seed=1)
    em = MatchModelConfig(weak_min_pairs=1000)
    assert weak_pair_scorer(fit_match_model(frame, em), em) == "Fellegi-Sunter EM"
    default = MatchModelConfig()
    assert weak_pair_scorer(fit_match_model(frame, default), default).startswith(
        "fixed priors (EM needs 20,000 weak-only pairs, had "
    )
    off = MatchModelConfig(weak_model=False)
    assert weak_pair_scorer(fit_match_model(frame, off), off) == "fixed priors (ATTRIBUTION_WEAK_PAIR_MODEL=priors)"
    few_anchors = MatchModelConfig(weak_min_pairs=1000, weak_min_anchors=10**9)
    assert weak_pair_scorer(fit_match_model(frame, few_anchors), few_anchors).startswith(
        "fixed priors (EM needs 1,000,000,000 anchor pairs, had "
    )
    strict = MatchModelConfig(weak_min_pairs=1000, weak_max_match_rate=1e-3)
    assert weak_pair_scorer(fit_match_model(frame, strict), strict).startswith("fixed priors (EM fit implausible")
    assert weak_pair_scorer(prior_model(), default) == "fixed priors (too few labelled conversions)"


def test_settings_normalise_and_reject_unknown_values() -> None:
    choices = ("auto", "priors")
    assert PipelineSettings.from_env({"ATTRIBUTION_WEAK_PAIR_MODEL": " Priors "}).weak_pair_model == "priors"
    assert PipelineSettings.from_env({"ATTRIBUTION_WEAK_PAIR_MODEL": ""}).weak_pair_model == "priors"
    with pytest.raises(ValueError, match="ATTRIBUTION_WEAK_PAIR_MODEL='splink' must be one of"):
        PipelineSettings.from_env({"ATTRIBUTION_WEAK_PAIR_MODEL": "splink"})
    assert choices == WEAK_PAIR_MODELS


def test_settings_read_shared_values_from_the_dbt_vars() -> None:
    """The lookback and the grain have one definition, dbt_project.yml's vars."""
    project = yaml.safe_load((PROJECT_ROOT / "dbt_project.yml").read_text())["vars"]
    defaults = PipelineSettings.from_env({})
    assert defaults.lookback_days == project["lookback_days"]
    assert defaults.grain == "channel"
    assert PipelineSettings.from_env({"ATTRIBUTION_GRAIN": "creator_id"}).grain == "creator_id"
    assert dbt_var("attribution_grain", {"ATTRIBUTION_GRAIN": "link_id"}) == "link_id"
    with pytest.raises(ValueError, match="ATTRIBUTION_GRAIN='week' must be one of"):
        PipelineSettings.from_env({"ATTRIBUTION_GRAIN": "week"})


LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
ASSETS = "{ assetNodes { assetKey { path } isPartitioned } }"
LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { status } ... on PythonError { message } } }"""
SCHEDULES = """{ repositoriesOrError { ... on RepositoryConnection { nodes { schedules { name } } } } }"""


@pytest.mark.e2e
def test_webserver_serves_every_asset_and_a_three_day_backfill_succeeds(
    materialised: Materialised, tmp_path: Path
) -> None:
    duckdb_target = materialised.target
    assert materialised.daily_result.success  # every asset materialised once, as an operator has it
    home = prepare_dagster_home(duckdb_target, tmp_path / "ui_home")
    # Hash seed 1 ordered Dagster's backfill validation so that it rejected the non-subsettable attribution
    # multi-asset (a Dagster 1.13 subset-comparison bug); pinning it keeps that regression covered.
    # Started as an operator's service unit would: `.venv/bin/attribution ui`, without .venv/bin on PATH.
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONHASHSEED": "1", "PATH": "/usr/bin:/bin"}
    attribution = Path(sys.executable).with_name("attribution")

    def argv(port: int) -> list[str]:
        return [str(attribution), "ui", "--host", "127.0.0.1", "--port", str(port)]

    log_path = tmp_path / "dagster_dev.log"
    with serving(argv, env, log_path, timeout=120) as port:
        entries = graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
        assert [e["locationOrLoadError"]["__typename"] for e in entries] == ["RepositoryLocation"], entries
        nodes = graphql(port, ASSETS)["assetNodes"]
        served = {tuple(n["assetKey"]["path"]) for n in nodes}
        defs = load_definitions(duckdb_target)
        assert served == {tuple(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys()}
        schedules = graphql(port, SCHEDULES)["repositoriesOrError"]["nodes"][0]["schedules"]
        assert {"hourly_refresh_schedule", "daily_refit_schedule"} <= {s["name"] for s in schedules}

        # Backfill the daily-partitioned assets (candidates → scores → credits → facts) for three days.
        partitioned = sorted(tuple(n["assetKey"]["path"]) for n in nodes if n["isPartitioned"])
        assert ("intermediate", "attribution_credits") in partitioned
        days = [world_day(WORLD.days - i).strftime("%Y-%m-%d") for i in (3, 2, 1)]
        params = {"partitionNames": days, "assetSelection": [{"path": list(k)} for k in partitioned]}
        launched = graphql(port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        deadline = time.monotonic() + 420
        status = None
        while time.monotonic() < deadline:
            status = graphql(port, BACKFILL, {"id": launched["backfillId"]})["partitionBackfillOrError"]["status"]
            if status not in ("REQUESTED", "IN_PROGRESS"):
                break
            time.sleep(3)
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), (status, log_path.read_text()[-4000:])
