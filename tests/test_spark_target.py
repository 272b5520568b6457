"""The Spark target's settings and SQL bridge, without starting a JVM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
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


@pytest.fixture(scope="module")
def spark_session(tmp_path_factory: pytest.TempPathFactory) -> object:
    """The process's session (one JVM per process: the embedded metastore admits one), in a throwaway folder when
    this module starts it. Only temporary views are used here, never the metastore's tables."""
    pytest.importorskip("pyspark")
    from warehouse import spark

    folder = tmp_path_factory.mktemp("spark_groups")
    return spark.session(resolve_target("spark", environ={"ATTRIBUTION_SPARK_DIR": str(folder)}).spark)


def _attribution_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scored candidates and conversions over five conversion days, with the nulls the warehouse holds: unknown
    links and identities, missing revenue, rates and conversion flags, a day whose conversions have no candidate."""
    from tests.test_attribution_models import DAY0, random_candidates

    scored, _ = random_candidates(seed=5, n_conversions=40)
    scored["conversion_date"] = scored["converted_at"].dt.date
    scored.loc[::7, "link_id"] = None
    scored["is_conversion"] = scored["conversion_id"].str.endswith("3").map({True: None, False: True})
    scored.loc[::5, "revenue"] = None
    first = scored.drop_duplicates("conversion_id")
    lonely = DAY0 + pd.Timedelta(days=30)
    conversions = pd.DataFrame(
        {
            "conversion_id": [*first["conversion_id"], "lonely-1", "lonely-2"],
            "conversion_date": [*first["conversion_date"], lonely.date(), lonely.date()],
            "converted_at": [*first["converted_at"], lonely, lonely],
            "event_type": ["purchase"] * len(first) + ["signup", "purchase"],
            "revenue": [*first["revenue"], None, 5.0],
            "is_conversion": [*(~first["conversion_id"].str.endswith("3")), False, True],
            "identity_id": [f"p{i % 3}" if i % 4 else None for i in range(len(first) + 2)],
        }
    )
    conversions["reporting_revenue"] = conversions["revenue"].where(conversions.index % 6 != 1)
    return scored, conversions


def test_steps_per_conversion_day_give_the_rows_of_the_whole_frame(spark_session: object) -> None:
    """Credits and facts computed per conversion day on Spark's executors (cogrouped, as Warehouse.map_groups
    does) equal the same steps on the whole frames read to the driver, nulls included; and a group reaches the
    step with the dtypes the driver path gives."""
    from functools import partial

    from python_models.attribution import DEFAULT_CONFIG, conversion_paths, fit_data_driven, select_touches
    from python_models.confidence import prior_model
    from python_models.steps import conversion_credits, conversion_fact_rows
    from warehouse.spark import frame_to_spark, spark_to_frame
    from warehouse.spark_groups import map_groups, output_schema

    spark = spark_session
    scored, conversions = _attribution_inputs()
    sources = [frame_to_spark(spark, scored), frame_to_spark(spark, conversions)]
    whole = [spark_to_frame(s) for s in sources]  # what the driver path reads
    scored_whole = whole[0].assign(revenue=lambda f: f["revenue"].fillna(0.0))
    paths = conversion_paths(select_touches(scored_whole, DEFAULT_CONFIG), DEFAULT_CONFIG.grain)
    weights = fit_data_driven(paths, DEFAULT_CONFIG).channel_weights
    steps = {
        "credits": partial(conversion_credits, DEFAULT_CONFIG, weights),
        "facts": partial(conversion_fact_rows, DEFAULT_CONFIG, prior_model(), 0.5),
    }
    keys = {"credits": ["conversion_id", "model", "is_unattributed", "click_id"], "facts": ["conversion_id"]}
    for name, step in steps.items():
        expected = frame_to_spark(spark, step(*whole))
        # The credits' schema from an existing destination (a view standing in for the table); the facts' from
        # one group computed on the driver, as before a first write.
        expected.createOrReplaceTempView(f"dest_{name}")
        destination = f"dest_{name}" if name == "credits" else f"no_such_schema.{name}"
        schema = output_schema(spark, destination, step, sources, "conversion_date")
        assert schema == expected.schema, name
        got = spark_to_frame(map_groups(spark, step, sources, "conversion_date", schema))
        want = spark_to_frame(expected)
        assert len(got) > 30 and got["conversion_id"].nunique() == want["conversion_id"].nunique() > 25, name
        pd.testing.assert_frame_equal(
            got.sort_values(keys[name]).reset_index(drop=True), want.sort_values(keys[name]).reset_index(drop=True)
        )

    def dtypes(scored: pd.DataFrame, conversions: pd.DataFrame) -> pd.DataFrame:
        names = [*scored.columns, *conversions.columns]
        return pd.DataFrame(
            {
                "side": ["scored"] * scored.shape[1] + ["conversions"] * conversions.shape[1],
                "name": names,
                "dtype": [str(t) for t in [*scored.dtypes, *conversions.dtypes]],
            }
        )

    seen = map_groups(spark, dtypes, sources, "conversion_date", frame_to_spark(spark, dtypes(*whole)).schema)
    per_group = spark_to_frame(seen).drop_duplicates()
    driver = dtypes(*whole)
    assert sorted(map(tuple, per_group.to_numpy().tolist())) == sorted(map(tuple, driver.to_numpy().tolist()))
    assert {"boolean", "float64", "object"} <= set(driver["dtype"]) and driver["dtype"].str.startswith(
        "datetime64"
    ).any()
