"""The Spark target's settings and SQL bridge, without starting a JVM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse.target import PROJECT_ROOT, TARGETS, resolve_target, target_env

SPARK = {"ATTRIBUTION_TARGET": "spark"}


def test_spark_is_chosen_like_the_other_targets_and_unknown_names_are_refused() -> None:
    assert resolve_target("spark", environ={}).is_spark
    assert resolve_target(None, environ=SPARK).is_spark
    with pytest.raises(ValueError, match="one of"):
        resolve_target("sparkk", environ={})


def test_spark_folder_and_master_come_from_the_environment() -> None:
    t = resolve_target(
        None, environ={**SPARK, "ATTRIBUTION_SPARK_DIR": "data/s", "ATTRIBUTION_SPARK_MASTER": "local[1]"}
    )
    assert t.spark.folder == PROJECT_ROOT / "data" / "s"
    conf = t.spark.conf()
    assert conf["spark.master"] == "local[1]"
    assert conf["spark.sql.warehouse.dir"] == str(PROJECT_ROOT / "data" / "s" / "warehouse")
    assert conf["spark.ui.showConsoleProgress"] == "false"
    assert resolve_target(None, environ=SPARK).spark.master == "local[2]"
    env = target_env(t)
    assert (env["ATTRIBUTION_SPARK_DIR"], env["ATTRIBUTION_SPARK_MASTER"]) == (str(t.spark.folder), "local[1]")


def test_portable_sql_is_translated_outside_literals_only() -> None:
    pytest.importorskip("pyspark")
    from warehouse.spark import to_spark_sql

    sql = (
        'select cast(x as text), "a""b" from "raw"."load_log" '
        "where s = 'as text \"q\"' and t > cast('2026-01-01' as timestamp with time zone)"
    )
    assert to_spark_sql(sql) == (
        "select cast(x as string), `a``b` from `raw`.`load_log` "
        "where s = 'as text \"q\"' and t > cast('2026-01-01' as timestamp)"
    )
    # A comment's apostrophe opens no literal: what follows it is still translated.
    assert to_spark_sql("-- a node's key\nselect cast(x as text)") == "-- a node's key\nselect cast(x as string)"


_DEFINITIONS_SUMMARY = """
import json
import orchestration.definitions as d
graph = d.defs.resolve_asset_graph()
print(json.dumps({
    "assets": sorted([k.to_user_string(), graph.get(k).partitions_def is not None] for k in graph.get_all_asset_keys()),
    "checks": sorted(str(c) for c in graph.asset_check_keys),
    "jobs": sorted(j.name for j in d.defs.resolve_all_job_defs()),
    "schedules": sorted(s.name for s in d.defs.schedules),
    "sensors": sorted(s.name for s in d.defs.sensors),
}))
"""


def test_the_ui_shows_the_same_graph_checks_partitions_and_jobs_on_every_target(tmp_path: Path) -> None:
    """What the Dagster UI lists (assets, which are partitioned, checks, jobs, schedules, sensors) is the same code
    location on every target: loading it needs no warehouse and no JVM."""
    summaries = {}
    for name in TARGETS:
        env = {**os.environ, "ATTRIBUTION_TARGET": name, "ATTRIBUTION_SPARK_DIR": str(tmp_path / "spark")}
        proc = subprocess.run([sys.executable, "-c", _DEFINITIONS_SUMMARY], env=env, cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        summaries[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(summaries["duckdb"]["assets"]) > 40 and len(summaries["duckdb"]["checks"]) > 100
    assert any(partitioned for _, partitioned in summaries["duckdb"]["assets"])
    assert set(summaries) == {"duckdb", "postgres", "spark"}
    for name, summary in summaries.items():
        assert summary == summaries["duckdb"], name
