"""Identity resolution: connected components over strong identifier edges, with per-identity guards.

dbt does the string work before and after this asset: int_identity_nodes numbers the strong identifiers,
int_identity_node_edges turns the edges into pairs of node numbers, and after it int_identities, int_identity_map
and int_event_identities name the identities and give every event its own (tag after_identity_graph, a dbt stage of
their own). This asset keeps in Python only what needs Python: the components of the integer graph, split where they
break a per-identity limit (:func:`python_models.identity.resolve_identity_nodes`). It writes one integer table,
node -> representative node. Pulling 13M identifier strings into pandas cost more than the whole graph algorithm.

On Spark the graph is not collected: :mod:`warehouse.spark_graph` finds the components in Spark (large-star /
small-star rounds), hands only the components that break a limit to the same function on the driver, gives every
other component its representative by the same rule in Spark, and writes the table from Spark.
"""

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from orchestration.assets.common import PYTHON_SCHEMA, PhaseTimer
from orchestration.assets.keys import IDENTITY_REPRESENTATIVES, INT_IDENTITY_NODE_EDGES, INT_IDENTITY_NODES
from orchestration.resources import WarehouseResource
from orchestration.settings import PipelineSettings
from python_models.identity import (
    CODED_EDGE_COLUMNS,
    IdentityLimits,
    ValueLookup,
    resolve_identity_nodes,
)
from warehouse.client import Warehouse, qualified

_NODES = qualified(*INT_IDENTITY_NODES.path)
_NODE_EDGES = qualified(*INT_IDENTITY_NODE_EDGES.path)
_COLLISIONS = qualified("intermediate", "int_identity_key_collisions")
_LOOKUP = "identity_lookup__tmp"

# Nothing here depends on row order (the graph is resolved order-free, tested with shuffled input); without the
# guarantee DuckDB reads the edge view's joins and writes the result in parallel (~8 s of ~50 s at 10M clicks).
IDENTITY_DUCKDB_SETTINGS: dict[str, object] = {"preserve_insertion_order": False}


def node_values(wh: Warehouse, conn: object) -> ValueLookup:
    """The graph's tie-breaking values, read from int_identity_nodes on demand: moving all 13M strings to Python
    cost ~2 s at 10M clicks, and only components with ties or splits read any."""

    def lookup(ids: np.ndarray) -> pa.Array:
        wanted = pd.DataFrame({"node": ids, "position": np.arange(len(ids), dtype=np.int64)})
        with wh.registered(_LOOKUP, wanted, conn) as name:
            found = wh.query_df(
                f"select w.position, n.identifier_value from {name} as w inner join {_NODES} as n on n.node = w.node "
                "order by w.position",
                conn,
                arrow=True,
            )
        # A few thousand values: through Python lists, the same on both engines' frame types.
        return pa.array(found["identifier_value"].tolist(), type=pa.large_string())

    return lookup


def _resolve_in_spark(spark: object, limits: IdentityLimits, timer: PhaseTimer) -> tuple[int, dict[str, int]]:
    """The Spark target's graph: components and representatives in Spark, only the components that break a limit
    resolved on the driver by the same function (:mod:`warehouse.spark_graph`); the table is written from Spark."""
    from warehouse import spark_graph

    nodes = spark.table(".".join(INT_IDENTITY_NODES.path[-2:]))
    edges = spark.table(".".join(INT_IDENTITY_NODE_EDGES.path[-2:]))
    result = spark_graph.resolve_graph(
        spark,
        nodes.select("node", "type_rank", "identifier_value", "first_seen_us"),
        edges.select(*CODED_EDGE_COLUMNS),
        limits.as_array().tolist(),
        lambda n, e, lookup: resolve_identity_nodes(n, e, limits, lookup),
        CODED_EDGE_COLUMNS,
        timer,
    )
    with timer("representatives_and_write"):
        spark_graph.write_table(result.representatives, PYTHON_SCHEMA, IDENTITY_REPRESENTATIVES.path[-1])
    return result.stats["n_identifiers"], result.stats


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            IDENTITY_REPRESENTATIVES,
            deps=[INT_IDENTITY_NODES, INT_IDENTITY_NODE_EDGES],
            description="The resolved identity graph: every node of int_identity_nodes → the node of its identity's "
            "earliest identifier. Named and assigned to events by the after_identity_graph dbt models.",
            group_name="identity",
        ),
    ],
    pool="warehouse",
)
def identity_graph(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: dg.ResourceParam[PipelineSettings]
):
    wh = warehouse.get()
    limits = settings.identity_limits
    timer = PhaseTimer()
    spark_stats: dict[str, int] = {}
    with wh.transaction(IDENTITY_DUCKDB_SETTINGS) as conn:
        if wh.target.is_spark:
            n_rows, stats = _resolve_in_spark(conn, limits, timer)
            spark_stats = {"component_rounds": stats["component_rounds"], "driver_nodes": stats["driver_nodes"]}
        else:
            with timer("read_graph"):
                nodes = wh.query_df(f"select node, type_rank, first_seen_us from {_NODES}", conn, arrow=True)
                edges = wh.query_df(f"select {', '.join(CODED_EDGE_COLUMNS)} from {_NODE_EDGES}", conn, arrow=True)
            with timer("resolve_graph"):
                representatives, stats = resolve_identity_nodes(nodes, edges, limits, node_values(wh, conn))
                del nodes, edges
            with timer("write"):
                n_rows = wh.replace_table(representatives, PYTHON_SCHEMA, IDENTITY_REPRESENTATIVES.path[-1], conn)
        colliding_nodes = int(wh.scalar(f"select count(*) from {_COLLISIONS}", conn) or 0)
    yield dg.MaterializeResult(
        asset_key=IDENTITY_REPRESENTATIVES,
        metadata={
            "dagster/row_count": n_rows,
            "identities": stats["n_identities"],
            "identifiers": stats["n_identifiers"],
            "edges": stats["n_edges"],
            "components_split": stats["n_components_split"],
            "largest_identity": stats["largest_identity"],
            # Nodes whose join key another node shares; the dbt models check their strings (normally 0).
            "colliding_nodes": colliding_nodes,
            "limits": dg.MetadataValue.json(limits.as_dict()),
            "seconds_by_phase": dg.MetadataValue.json(timer.seconds),
            # Spark only: large-star / small-star rounds to the components, nodes of the components split on the driver.
            **spark_stats,
        },
    )
