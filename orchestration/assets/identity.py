"""Identity resolution: connected components over strong identifier edges, with per-identity guards.

dbt does the string work before and after this asset: int_identity_nodes numbers the strong identifiers,
int_identity_node_edges turns the edges into pairs of node numbers, and after it int_identities, int_identity_map
and int_event_identities name the identities and give every event its own (tag after_identity_graph, a dbt stage of
their own). This asset keeps in Python only what needs Python: the components of the integer graph, split where they
break a per-identity limit (:func:`python_models.identity.resolve_identity_nodes`). It writes one integer table,
node -> representative node. Pulling 13M identifier strings into pandas cost more than the whole graph algorithm.

In the hourly job (run tag IDENTITIES_TAG) the asset does not re-fit: it merges the identifiers and edges of the
events loaded since the graph's mark into the stored identities (orchestration.assets.identity_merge); every re-fit
empties what the merges added.

On Spark the graph is not collected: :mod:`warehouse.spark_graph` finds the components in Spark (large-star /
small-star rounds), hands only the components that break a limit to the same function on the driver, gives every
other component its representative by the same rule in Spark, and writes the table from Spark.
"""

from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from orchestration.assets.common import PYTHON_SCHEMA, PhaseTimer, refresh_scope_metadata
from orchestration.assets.identity_merge import (
    REPRESENTATIVES,
    MergeState,
    empty_state,
    fitted_loaded_through,
    merge_new_events,
    write_state,
)
from orchestration.assets.keys import (
    IDENTITY_ADDED_NODES,
    IDENTITY_FORWARDS,
    IDENTITY_REPRESENTATIVES,
    INT_IDENTITY_INCREMENT_EDGES,
    INT_IDENTITY_INCREMENT_NODES,
    INT_IDENTITY_NODE_EDGES,
    INT_IDENTITY_NODES,
)
from orchestration.partitions import IDENTITIES_MERGED, IDENTITIES_TAG
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
            deps=[
                INT_IDENTITY_NODES,
                INT_IDENTITY_NODE_EDGES,
                INT_IDENTITY_INCREMENT_NODES,
                INT_IDENTITY_INCREMENT_EDGES,
            ],
            description="The resolved identity graph: every node of int_identity_nodes → the node of its identity's "
            "earliest identifier, re-fitted daily; the hourly job merges the new loads' identifiers and edges into it "
            "(identity_added_nodes, identity_forwards). Named and assigned to events by the after_identity_graph dbt "
            "models.",
            group_name="identity",
        ),
        dg.AssetSpec(
            IDENTITY_ADDED_NODES,
            deps=[INT_IDENTITY_INCREMENT_NODES, INT_IDENTITY_INCREMENT_EDGES],
            description="Identifiers first seen since the last re-fit, numbered after int_identity_nodes by the "
            "hourly merges, with their identity; emptied by every re-fit.",
            group_name="identity",
        ),
        dg.AssetSpec(
            IDENTITY_FORWARDS,
            deps=[INT_IDENTITY_INCREMENT_NODES, INT_IDENTITY_INCREMENT_EDGES],
            description="Identities that joined an earlier one in an hourly merge since the last re-fit (old → new "
            "representative, old id); emptied by every re-fit.",
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
    if context.run.tags.get(IDENTITIES_TAG) == IDENTITIES_MERGED:
        scope = refresh_scope_metadata(context)
        with wh.transaction(IDENTITY_DUCKDB_SETTINGS) as conn:
            merged = merge_new_events(wh, conn, limits, timer)
        if merged is None:
            # Nothing to merge into: the events keep their own identities until the first re-fit.
            for key in (IDENTITY_REPRESENTATIVES, IDENTITY_ADDED_NODES, IDENTITY_FORWARDS):
                yield dg.MaterializeResult(asset_key=key, metadata={"mode": "waiting for the first re-fit", **scope})
            return
        state, merge_stats = merged
        yield dg.MaterializeResult(
            asset_key=IDENTITY_REPRESENTATIVES,
            metadata={
                "mode": "hourly merge of the new loads",
                **merge_stats,
                "loaded_through": state.loaded_through.isoformat(),
                "limits": dg.MetadataValue.json(limits.as_dict()),
                "seconds_by_phase": dg.MetadataValue.json(timer.seconds),
                **scope,
            },
        )
        yield from _state_materializations(state, scope)
        return
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
                if wh.target.is_postgres:
                    # The hourly merge and int_event_identities look up a few nodes and identities by either column.
                    for column in ("node", "rep_node"):
                        wh.execute(f"create index on {REPRESENTATIVES} ({column})", conn)
        # A re-fit holds every identifier: the hourly merges start again from it.
        state = empty_state(int(stats["n_identifiers"]), fitted_loaded_through(wh, conn))
        write_state(wh, conn, state)
        colliding_nodes = int(wh.scalar(f"select count(*) from {_COLLISIONS}", conn) or 0)
    yield dg.MaterializeResult(
        asset_key=IDENTITY_REPRESENTATIVES,
        metadata={
            "mode": "re-fit of every identifier",
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
    yield from _state_materializations(state)


def _state_materializations(
    state: MergeState, scope: dict[str, dg.MetadataValue] | None = None
) -> Iterator[dg.MaterializeResult]:
    """What the hourly merges added since the last re-fit (nothing right after one)."""
    yield dg.MaterializeResult(
        asset_key=IDENTITY_ADDED_NODES,
        metadata={"dagster/row_count": len(state.added), "next_node": state.next_node, **(scope or {})},
    )
    yield dg.MaterializeResult(
        asset_key=IDENTITY_FORWARDS,
        metadata={
            "dagster/row_count": len(state.forwards),
            "loaded_through": state.loaded_through.isoformat(),
            "identities_fitted_at": state.fitted_at,
            **(scope or {}),
        },
    )
