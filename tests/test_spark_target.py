"""The Spark target's settings and SQL bridge, without starting a JVM."""

from __future__ import annotations

import pytest

from warehouse.target import PROJECT_ROOT, resolve_target, target_env

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
