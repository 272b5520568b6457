"""The Spark target's settings, SQL bridge and code location, without a JVM; then, on the process's one session
(marker spark), the per-day steps and the identity graph's Spark path against their driver-side results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


@pytest.mark.spark
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


def _graph_cases(rng: np.random.Generator) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Integer graphs (node ids shuffled so that no shape is numbered in path order)."""
    user_id, email, cookie, session = range(4)
    types: list[int] = []
    first: list[float] = []
    pairs: list[tuple[int, int]] = []

    def add(type_rank: int, seen: float) -> int:
        types.append(type_rank)
        first.append(seen)
        return len(types) - 1

    chain = [add(cookie if i % 2 else session, 10 + i) for i in range(6)]
    pairs += list(zip(chain, chain[1:], strict=False))
    hub = add(cookie, 50)
    pairs += [(hub, add(session, 40 + i)) for i in range(8)]  # a star: the earliest session names it
    path = [add(cookie if i % 3 else session, 1000 - i) for i in range(80)]  # long: several rounds
    pairs += list(zip(path, path[1:], strict=False))
    for _ in range(3):
        add(session, 5)  # isolated nodes
    u1, c1, u2 = add(user_id, 7), add(cookie, 3), add(user_id, 9)  # two user ids: breaks max_user_ids=1
    tail = add(session, 2)
    pairs += [(u1, c1), (c1, u2), (u2, tail), (u2, u2)]
    e1, e2, c2 = add(email, 20), add(email, 20), add(cookie, np.nan)  # a tie on first_seen and type: values decide
    pairs += [(c2, e1), (e2, c2), (e1, c2)]  # a duplicate edge, the other way round
    n1, n2 = add(session, np.nan), add(cookie, np.nan)  # nothing dated: unknown sorts last, then type
    pairs += [(n1, n2)]

    n = len(types)
    ids = rng.permutation(n)
    shapes_nodes = pd.DataFrame({"node": ids, "type_rank": types, "first_seen_us": first})
    shapes_nodes["identifier_value"] = [f"value-{(7919 * i) % 1009:04d}" for i in range(n)]
    # e1's value sorts after e2's although e1 comes first: the tie is broken by the value.
    shapes_nodes.loc[[e1, e2], "identifier_value"] = ["tie-b", "tie-a"]
    shapes_edges = pd.DataFrame({"u": ids[[p[0] for p in pairs]], "v": ids[[p[1] for p in pairs]]})

    m, k = 3000, 2500
    random_nodes = pd.DataFrame(
        {
            "node": np.arange(m),
            "type_rank": rng.choice(4, m, p=[0.02, 0.08, 0.3, 0.6]),
            "first_seen_us": np.where(rng.random(m) < 0.05, np.nan, rng.integers(0, 30, m)),
            "identifier_value": [f"r{i * 7 % m}" for i in range(m)],
        }
    )
    random_edges = pd.DataFrame({"u": rng.integers(0, m, k), "v": rng.integers(0, m, k)})

    cases = {}
    graphs = {"shapes": (shapes_nodes, shapes_edges), "random": (random_nodes, random_edges)}
    for name, (nodes, edges) in graphs.items():
        nodes = nodes.assign(
            type_rank=nodes["type_rank"].astype("int16"), first_seen_us=nodes["first_seen_us"].astype("Int64")
        )
        size = len(edges)
        edges = edges.assign(
            n_events=rng.integers(1, 4, size),
            trust=rng.integers(0, 6, size),
            first_seen_us=rng.integers(0, 40, size),
            last_seen_us=rng.integers(40, 80, size),
        )
        cases[name] = (nodes.sample(frac=1, random_state=1), edges.sample(frac=1, random_state=2))
    cases["no_edges"] = (cases["shapes"][0], cases["shapes"][1].iloc[:0])
    return cases


@pytest.mark.spark
def test_identity_components_in_spark_equal_the_driver_resolution(spark_session: object) -> None:
    """Large-star / small-star components, the limit-breaking components resolved on the driver and the others'
    representatives in Spark: row for row what resolve_identity_nodes gives for the whole graph."""
    import pyarrow as pa
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    from python_models.identity import CODED_EDGE_COLUMNS, IdentityLimits, resolve_identity_nodes
    from warehouse import spark_graph

    # The long path (53 cookies, 27 sessions) stays within them; two user ids in one component do not.
    limits = IdentityLimits(max_user_ids=1, max_emails=2, max_cookies=60, max_sessions=40)
    cases = _graph_cases(np.random.default_rng(24))
    spark: dict[str, dict[str, object]] = {}
    for name, (nodes, edges) in cases.items():
        s_nodes = spark_session.createDataFrame(pa.Table.from_pandas(nodes, preserve_index=False))
        s_edges = spark_session.createDataFrame(pa.Table.from_pandas(edges, preserve_index=False))
        components, rounds = spark_graph.connected_components(s_nodes.select("node"), s_edges.select("u", "v"))
        result = spark_graph.resolve_graph(
            spark_session,
            s_nodes,
            s_edges,
            limits.as_array().tolist(),
            lambda n, e, lookup: resolve_identity_nodes(n, e, limits, lookup),
            CODED_EDGE_COLUMNS,
        )
        spark[name] = {"stats": result.stats, "rounds": rounds}
        expected, stats = resolve_identity_nodes(nodes, edges, limits)
        got = result.representatives.toPandas().sort_values("node", ignore_index=True)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, obj=name)
        assert {k: result.stats[k] for k in stats} == stats, name
        # Components: each node labelled with its component's smallest node, as scipy finds them.
        n = len(nodes)
        adjacency = coo_array((np.ones(len(edges)), (edges["u"].to_numpy(), edges["v"].to_numpy())), shape=(n, n))
        _, scipy_labels = connected_components(adjacency, directed=False)
        smallest = pd.Series(np.arange(n)).groupby(scipy_labels).transform("min").to_numpy()
        components = components.toPandas().sort_values("node")
        assert np.array_equal(components["component"].to_numpy(), smallest), name

    shapes, random = spark["shapes"], spark["random"]
    assert shapes["rounds"] >= 3 and spark["no_edges"]["rounds"] == 0
    # Only the components breaking a limit went to the driver: u1 - c1 - u2 - tail in the shapes.
    assert shapes["stats"]["n_components_split"] == 1 and shapes["stats"]["driver_nodes"] == 4
    assert random["stats"]["n_components_split"] >= 1 and 0 < random["stats"]["driver_nodes"] < len(cases["random"][0])
