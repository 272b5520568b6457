"""The identity graph on the Spark target, resolved in Spark: only components that need Python reach the driver.

Connected components by the large-star / small-star scheme of Kiveris et al. (2014, "Connected Components in
MapReduce and Beyond"), with the DataFrame API: the edge set is rewritten round after round until it is a set of
stars, each centred on its component's smallest node, which is then every member's label. Both steps keep the
graph's connectivity, and the number of rounds grows with the logarithm of the nodes. Each round's edges are
checkpointed (``localCheckpoint``), so plans stay one round long.

Then, per component: its identifiers per type. A component that breaks a per-identity limit is collected (its nodes
and edges alone) and resolved on the driver by the caller's function (the pipeline passes
``python_models.identity.resolve_identity_nodes``): the constrained split is a sequential union-find. Every other
component keeps its representative by the same rule, computed in Spark: the node of its earliest identifier
(``first_seen_us``, unknown last), then type priority (``type_rank``), then the smallest identifier value, which is
read for tied candidates only. The result equals the driver's resolution of the whole graph row for row, because a
split never looks beyond its own component.

This module imports pyspark; ``python_models`` stay free of it (and this module of them: the caller passes the limits
and the driver's resolver).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

# The driver's resolver on a renumbered subgraph: (nodes, edges, value lookup) -> (node -> rep_node, sizes).
DriverResolver = Callable[[pd.DataFrame, pd.DataFrame, Callable[[np.ndarray], pa.Array]], tuple[pd.DataFrame, dict]]

# A bound on rounds that a correct run never reaches (it needs ~log2 of the nodes): a guard against a bug looping.
MAX_ROUNDS = 200
_LATEST = np.iinfo(np.int64).max  # an unknown first_seen_us sorts after every real one


@dataclass(frozen=True)
class GraphResult:
    """What :func:`resolve_graph` found: node -> rep_node as a Spark DataFrame (not yet written) and its sizes."""

    representatives: DataFrame
    stats: dict[str, int]


def _checkpoint(df: DataFrame) -> DataFrame:
    # Eager: the round's work is done here, and the next round's plan starts from these rows.
    return df.localCheckpoint(eager=True)


def _undirected(edges: DataFrame) -> DataFrame:
    """Each edge once as (lo, hi) with lo < hi; self-loops dropped (they connect nothing)."""
    return (
        edges.select(F.least("u", "v").alias("lo"), F.greatest("u", "v").alias("hi"))
        .where(F.col("lo") != F.col("hi"))
        .distinct()
    )


def _large_star(edges: DataFrame) -> DataFrame:
    """Every node links each strictly larger neighbour to the smallest node of its neighbourhood (itself included)."""
    both = edges.select(F.col("lo").alias("x"), F.col("hi").alias("y")).unionAll(
        edges.select(F.col("hi").alias("x"), F.col("lo").alias("y"))
    )
    smallest = both.groupBy("x").agg(F.least(F.min("y"), F.col("x")).alias("m"))
    return (
        both.join(smallest, "x")
        .where(F.col("y") > F.col("x"))
        .select(F.col("m").alias("lo"), F.col("y").alias("hi"))
        .distinct()
    )


def _small_star(edges: DataFrame) -> DataFrame:
    """Every node links itself and its smaller neighbours to the smallest of those neighbours."""
    smallest = edges.groupBy("hi").agg(F.min("lo").alias("m"))
    neighbours = (
        edges.join(smallest, "hi")
        .select(F.col("m").alias("lo"), F.col("lo").alias("hi"))
        .where(F.col("lo") != F.col("hi"))
    )
    return neighbours.unionAll(smallest.select(F.col("m").alias("lo"), F.col("hi"))).distinct()


def _is_star_forest(edges: DataFrame) -> bool:
    """True when every node has at most one smaller neighbour and no such neighbour has a smaller one itself: the
    edges are stars centred on their smallest node, so no later round can change a label. One job."""
    roles = edges.select(F.col("hi").alias("node"), F.lit(1).alias("child"), F.lit(0).alias("parent")).unionAll(
        edges.select(F.col("lo").alias("node"), F.lit(0).alias("child"), F.lit(1).alias("parent"))
    )
    per_node = roles.groupBy("node").agg(F.sum("child").alias("parents"), F.max("parent").alias("is_parent"))
    off = per_node.where((F.col("parents") > 1) | ((F.col("parents") == 1) & (F.col("is_parent") == 1)))
    return not off.limit(1).count()


def connected_components(nodes: DataFrame, edges: DataFrame) -> tuple[DataFrame, int]:
    """Each node's component as its smallest node id (checkpointed), and the rounds it took.

    ``nodes``: node (every id once); ``edges``: u, v (node ids of ``nodes``). A round is a large-star step followed
    by a small-star step; the loop stops when the edges form stars, after which no label changes.
    """
    current = _checkpoint(_undirected(edges))
    rounds = 0
    while not _is_star_forest(current):
        if rounds >= MAX_ROUNDS:
            raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
        # The previous round's blocks are freed by Spark's cleaner once nothing refers to them.
        current = _checkpoint(_small_star(_large_star(current)))
        rounds += 1
    labels = current.select(F.col("hi").alias("node"), F.col("lo").alias("component"))
    components = (
        nodes.select("node")
        .join(labels, "node", "left")
        .select("node", F.coalesce("component", "node").alias("component"))
    )
    return _checkpoint(components), rounds


def _from_pandas(spark: SparkSession, frame: pd.DataFrame) -> DataFrame:
    # Through Arrow: no per-row Python objects.
    return spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False))


def _value_lookup(spark: SparkSession, values: DataFrame, global_ids: np.ndarray) -> Callable[[np.ndarray], pa.Array]:
    """The driver resolver's lookup of tie-breaking values: local ids -> their global nodes' identifier_value."""

    def lookup(local: np.ndarray) -> pa.Array:
        wanted = pd.DataFrame({"node": global_ids[local], "position": np.arange(len(local), dtype=np.int64)})
        found = (
            _from_pandas(spark, wanted)
            .join(values, "node")
            .select("position", "identifier_value")
            .orderBy("position")
            .toArrow()
        )
        return found.column("identifier_value").combine_chunks().cast(pa.large_string())

    return lookup


def _on_driver(
    spark: SparkSession,
    nodes: DataFrame,
    edges: DataFrame,
    values: DataFrame,
    resolve: DriverResolver,
    edge_columns: Sequence[str],
) -> tuple[pd.DataFrame, dict]:
    """Resolve the given nodes (whole components) and the edges between them on the driver, renumbered 0 .. m-1."""
    node_frame = nodes.select("node", "type_rank", "first_seen_us").toArrow().to_pandas(types_mapper=pd.ArrowDtype)
    global_ids = np.sort(node_frame["node"].to_numpy(dtype=np.int64))
    inside = edges.join(nodes.select(F.col("node").alias("u")), "u", "left_semi")
    edge_frame = inside.select(*edge_columns).toArrow().to_pandas(types_mapper=pd.ArrowDtype)
    node_frame["node"] = np.searchsorted(global_ids, node_frame["node"].to_numpy(dtype=np.int64))
    for end in ("u", "v"):
        edge_frame[end] = np.searchsorted(global_ids, edge_frame[end].to_numpy(dtype=np.int64))
    local, stats = resolve(node_frame, edge_frame, _value_lookup(spark, values, global_ids))
    out = pd.DataFrame(
        {
            "node": global_ids[local["node"].to_numpy(dtype=np.int64)],
            "rep_node": global_ids[local["rep_node"].to_numpy(dtype=np.int64)],
        }
    )
    return out, stats


def _earliest_nodes(members: DataFrame, values: DataFrame) -> DataFrame:
    """component -> rep_node: its earliest identifier (first_seen_us, unknown last), then type_rank, then the
    smallest identifier_value, read for the components whose first two tie only."""
    keyed = members.select(
        "node",
        "component",
        F.struct(F.coalesce("first_seen_us", F.lit(int(_LATEST))).alias("t"), F.col("type_rank").alias("r")).alias(
            "key"
        ),
    )
    earliest = keyed.groupBy("component").agg(F.min("key").alias("key"))
    candidates = (
        keyed.join(earliest, ["component", "key"])
        .groupBy("component")
        .agg(F.count("*").alias("n"), F.min("node").alias("node"))
    )
    unique = candidates.where(F.col("n") == 1).select("component", F.col("node").alias("rep_node"))
    tied = (
        candidates.where(F.col("n") > 1)
        .select("component")
        .join(keyed.join(earliest, ["component", "key"]), "component")
        .join(values, "node")
        .groupBy("component")
        .agg(F.min(F.struct("identifier_value", "node")).getField("node").alias("rep_node"))
    )
    return unique.unionByName(tied)


def resolve_graph(
    spark: SparkSession,
    nodes: DataFrame,
    edges: DataFrame,
    limits: Sequence[int],
    resolve: DriverResolver,
    edge_columns: Sequence[str],
    timer: Callable[[str], Any] | None = None,
) -> GraphResult:
    """The identity graph's representatives, in Spark except for the components that break a limit.

    ``nodes``: node, type_rank, identifier_value (read for ties only), first_seen_us. ``edges``: ``edge_columns``
    (u, v and the attributes the driver's split reads). ``limits``: the most identifiers of each type_rank one
    identity may hold. ``resolve`` resolves a renumbered subgraph on the driver. ``timer(phase)``: a context manager
    timing each phase. Stats: the driver's sizes (n_identifiers, n_edges, n_identities, n_components_split,
    largest_identity) plus component_rounds and driver_nodes (the nodes resolved in Python).
    """
    phase = timer or (lambda _name: nullcontext())
    graph_nodes = nodes.select("node", "type_rank", "first_seen_us")
    values = nodes.select("node", "identifier_value")
    with phase("components"):
        ends = edges.select(F.col("u").alias("node")).unionAll(edges.select(F.col("v").alias("node")))
        stray = ends.join(graph_nodes, "node", "left_anti").limit(1).collect()
        if stray:
            raise ValueError(f"int_identity_node_edges names node {stray[0]['node']}, which int_identity_nodes lacks")
        components, rounds = connected_components(graph_nodes, edges.select("u", "v"))
    with phase("limits"):
        members = _checkpoint(graph_nodes.join(components, "node"))
        over = [F.sum((F.col("type_rank") == t).cast("long")) > int(limit) for t, limit in enumerate(limits)]
        breaking = F.lit(False)
        for condition in over:
            breaking = breaking | condition
        sized = _checkpoint(
            members.groupBy("component").agg(F.count("*").alias("size"), breaking.alias("breaks_limit"))
        )
        summary = sized.groupBy("breaks_limit").agg(
            F.count("*").alias("n"), F.max("size").alias("largest"), F.sum("size").alias("nodes")
        )
        rows = summary.collect()
        by_flag = {bool(r["breaks_limit"]): (int(r["n"]), int(r["largest"]), int(r["nodes"])) for r in rows}
        n_edges = edges.count()
    n_nodes = sum(nodes for _, _, nodes in by_flag.values())
    n_kept, largest_kept, _ = by_flag.get(False, (0, 0, 0))
    n_split, _, _ = by_flag.get(True, (0, 0, 0))
    with phase("split_on_driver"):
        split_nodes = members.join(sized.where("breaks_limit").select("component"), "component", "left_semi")
        if n_split:
            split, driver = _on_driver(spark, split_nodes, edges, values, resolve, edge_columns)
        else:
            split, driver = pd.DataFrame({"node": [], "rep_node": []}, dtype="int64"), {}
    # Lazy: the kept components' representatives are computed as the caller writes them.
    kept = members.join(sized.where(~F.col("breaks_limit")).select("component"), "component", "left_semi")
    resolved = kept.join(_earliest_nodes(kept, values), "component").select("node", "rep_node")
    if len(split):
        resolved = resolved.unionByName(_from_pandas(spark, split))
    stats = {
        "n_identifiers": n_nodes,
        "n_edges": n_edges,
        "n_identities": n_kept + int(driver.get("n_identities", 0)),
        "n_components_split": n_split,
        "largest_identity": max(largest_kept, int(driver.get("largest_identity", 0))),
        "component_rounds": rounds,
        "driver_nodes": len(split),
    }
    representatives = resolved.select(F.col("node").cast("bigint"), F.col("rep_node").cast("bigint"))
    return GraphResult(representatives=representatives, stats=stats)


def write_table(df: DataFrame, schema: str, table: str) -> None:
    """Overwrite ``schema.table`` with ``df``: a Parquet table, as the warehouse client writes them."""
    df.write.mode("overwrite").format("parquet").saveAsTable(f"{schema}.{table}")
