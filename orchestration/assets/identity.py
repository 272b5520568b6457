"""Identity resolution: connected components over strong identifier edges, with per-identity guards.

The warehouse does the string work (grouping identifiers, numbering and hashing them, joining edges to numbers, naming
identities, giving every event its identity); Python resolves the integer-coded graph
(:func:`python_models.identity.resolve_identity_nodes`). Pulling 13M identifier strings into pandas and hashing
them there cost more than the whole graph algorithm.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from orchestration.assets.common import PYTHON_SCHEMA, PhaseTimer, table_metadata
from orchestration.assets.keys import (
    EVENT_IDENTITIES,
    IDENTITY_MAP,
    INT_CLICKS,
    INT_IDENTIFIERS,
    INT_IDENTITY_EDGES,
    STG_CONVERSIONS,
)
from orchestration.resources import WarehouseResource
from python_models.identity import (
    STRONG_TYPES,
    IdentityLimits,
    ValueLookup,
    resolve_identity_nodes,
    trust_by_edge_type,
)
from warehouse.client import Warehouse

# SQL of a join key for (type expression, value expression); tests swap in a colliding one.
KeySql = Callable[[Warehouse, str, str], str]

# Session-scoped scratch relations of one materialisation (temporary tables on both engines).
_NODES = "identity_nodes__tmp"
_LABELS = "identity_labels__tmp"
_IDENTITIES = "identity_ids__tmp"
_KEYS = "identity_keys__tmp"
_LOOKUP = "identity_lookup__tmp"
_SCRATCH = (_NODES, _LABELS, _IDENTITIES, _KEYS)

# Columns of the events' strong identifiers, in STRONG_TYPES (priority) order.
_EVENT_COLUMNS = {"user_id": "user_id", "email": "email_hash", "cookie": "cookie_id", "session": "session_id"}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _case(column: str, mapping: dict[str, int], default: int) -> str:
    whens = " ".join(f"when {_literal(k)} then {v}" for k, v in sorted(mapping.items()))
    return f"case {column} {whens} else {default} end"


def node_key_sql(wh: Warehouse, type_expr: str, value_expr: str) -> str:
    """64-bit hash of (type, value): joins on it instead of on two strings are ~3× faster at 10M identifiers.
    Null for a null value, so a missing identifier never matches a node."""
    return f"case when {value_expr} is not null then {wh.hash64(type_expr, value_expr)} end"


def _not_blocked(limits: IdentityLimits, type_expr: str, value_expr: str) -> str:
    """SQL true unless (type, value) is a blocked strong identifier; per-type IN lists, no string building per row."""
    by_type: dict[str, list[str]] = {}
    for t, v in sorted(limits.blocked_values):
        if t in STRONG_TYPES:
            by_type.setdefault(t, []).append(_literal(v))
    terms = [
        f"not ({type_expr} = {_literal(t)} and coalesce({value_expr} in ({', '.join(values)}), false))"
        for t, values in by_type.items()
    ]
    return " and ".join(terms) if terms else "1 = 1"


def nodes_sql(wh: Warehouse, limits: IdentityLimits, key_sql: KeySql = node_key_sql) -> str:
    """One row per distinct strong, non-blocked identifier with a node id (0 .. n-1, in no particular order) and
    its join key."""
    strong = ", ".join(_literal(t) for t in STRONG_TYPES)
    type_rank = _case("identifier_type", {t: i for i, t in enumerate(STRONG_TYPES)}, -1)
    return f"""
        select
            row_number() over () - 1 as node,
            cast({type_rank} as smallint) as type_rank,
            identifier_value,
            {key_sql(wh, "identifier_type", "identifier_value")} as node_key,
            {wh.epoch_us("first_seen_at")} as first_seen_us
        from (
            select identifier_type, identifier_value, min(observed_at) as first_seen_at
            from intermediate.int_identifiers
            where identifier_type in ({strong})
                and {_not_blocked(limits, "identifier_type", "identifier_value")}
            group by identifier_type, identifier_value
        ) as identifiers
    """


def _type_name(rank_expr: str) -> str:
    """The identifier type of a node's type_rank (nodes keep the rank only: a string per row would spill)."""
    whens = " ".join(f"when {i} then {_literal(t)}" for i, t in enumerate(STRONG_TYPES))
    return f"case {rank_expr} {whens} end"


def _endpoint_join(side: str, by_key: bool, wh: Warehouse, key_sql: KeySql) -> str:
    type_col, value_col = f"edges.{side}_type", f"edges.{side}_value"
    alias = side[0]
    if by_key:
        return f"inner join {_NODES} as {alias} on {alias}.node_key = {key_sql(wh, type_col, value_col)}"
    return (
        f"inner join {_NODES} as {alias} "
        f"on {_type_name(f'{alias}.type_rank')} = {type_col} and {alias}.identifier_value = {value_col}"
    )


def _edges_where(limits: IdentityLimits) -> str:
    return (
        f"{_not_blocked(limits, 'edges.left_type', 'edges.left_value')} "
        f"and {_not_blocked(limits, 'edges.right_type', 'edges.right_value')}"
    )


def edge_count_sql(limits: IdentityLimits) -> str:
    """How many rows :func:`edges_sql` must return: one per edge between non-blocked identifiers."""
    return f"select count(*) from intermediate.int_identity_edges as edges where {_edges_where(limits)}"


def edges_sql(wh: Warehouse, limits: IdentityLimits, by_key: bool = True, key_sql: KeySql = node_key_sql) -> str:
    """int_identity_edges as node-id pairs. Edges touching a blocked identifier drop out.

    ``by_key`` joins the endpoints on the nodes' 64-bit hash key instead of (type, value). Every endpoint is an
    identifier of int_identifiers (the same events), so a node unless blocked, and blocked ones are filtered here
    explicitly: each edge finds its own two nodes, plus any node whose key collides with theirs. The result is
    therefore exact when it has :func:`edge_count_sql` rows, which the caller checks.
    """
    trust = _case("edges.edge_type", trust_by_edge_type(limits.edge_type_trust), 0)
    return f"""
        select
            l.node as u,
            r.node as v,
            edges.n_events,
            {trust} as trust,
            {wh.epoch_us("edges.first_seen_at")} as first_seen_us,
            {wh.epoch_us("edges.last_seen_at")} as last_seen_us
        from intermediate.int_identity_edges as edges
        {_endpoint_join("left", by_key, wh, key_sql)}
        {_endpoint_join("right", by_key, wh, key_sql)}
        where {_edges_where(limits)}
    """


def identities_sql(wh: Warehouse) -> str:
    """Each identity's name, 'idn_' + sha256('<type>:<value>')[:16] of its representative: hashed once per
    identity, not once per identifier."""
    digest = wh.sha256_hex(f"{_type_name('rep.type_rank')} || ':' || rep.identifier_value")
    return f"""
        select rep.node as rep_node, 'idn_' || substr({digest}, 1, 16) as identity_id
        from {_NODES} as rep
        inner join {_LABELS} as labels on labels.node = rep.node
        where labels.rep_node = labels.node
    """


def _node_identities(columns: str) -> str:
    return f"""
        select {columns}, identities.identity_id
        from {_NODES} as nodes
        inner join {_LABELS} as labels on labels.node = nodes.node
        inner join {_IDENTITIES} as identities on identities.rep_node = labels.rep_node
    """


def identity_map_sql() -> str:
    """Every node with the id of its identity."""
    return _node_identities(f"{_type_name('nodes.type_rank')} as identifier_type, nodes.identifier_value")


def identity_keys_sql() -> str:
    """The lookup table of :func:`event_identities_sql`'s key path: type rank, join key and representative per
    node; integers only, so the four lookups' hash tables stay small."""
    return f"""
        select nodes.type_rank, nodes.node_key, labels.rep_node
        from {_NODES} as nodes
        inner join {_LABELS} as labels on labels.node = nodes.node
    """


def identity_keys_frame(nodes: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """:func:`identity_keys_sql` from the frames Python already holds (``labels`` is in node order): on DuckDB
    scanning them costs ~0.1 s against ~0.9 s for the join at 10M clicks. PostgreSQL would pay a COPY instead."""
    node = nodes["node"].to_numpy(dtype=np.int64)
    return pd.DataFrame(
        {
            "type_rank": nodes["type_rank"].to_numpy(dtype=np.int16),
            "node_key": nodes["node_key"].to_numpy(),
            "rep_node": labels["rep_node"].to_numpy(dtype=np.int64)[node],
        }
    )


_EVENTS_SQL = f"""
    select 'click' as event_kind, click_id as event_id, {", ".join(_EVENT_COLUMNS.values())}
    from intermediate.int_clicks
    where not is_bot
    union all
    select 'conversion' as event_kind, conversion_id as event_id, {", ".join(_EVENT_COLUMNS.values())}
    from staging.stg_raw__conversions
"""


def event_count_sql() -> str:
    """How many rows :func:`event_identities_sql` must return: every non-bot click and every conversion."""
    return f"select count(*) from ({_EVENTS_SQL}) as events"


def event_identities_sql(
    wh: Warehouse, limits: IdentityLimits, by_key: bool = True, key_sql: KeySql = node_key_sql
) -> str:
    """Every non-bot click and every conversion with the identity of its highest-priority mapped identifier
    (user_id > email > cookie > session), else 'evt_' + sha256('<kind>:<id>')[:16].

    ``by_key`` looks identifiers up by hash key among the nodes of their type (the scratch keys table): like an
    edge endpoint, every event identifier is a node unless blocked, and blocked ones are excluded explicitly, so
    the result is exact when it has :func:`event_count_sql` rows. Otherwise the strings are looked up in the
    identity_map just written. Each lookup probes only events the higher-priority ones left unmapped."""
    lookups = []
    found: list[str] = []
    for rank, (t, column) in enumerate(_EVENT_COLUMNS.items()):
        value = f"events.{column}"
        if by_key:
            probe = f"case when {_not_blocked(limits, _literal(t), value)} then {key_sql(wh, _literal(t), value)} end"
            # One lookup per type over that type's nodes only: four hash tables of all 13M would not fit in memory.
            keys = f"(select node_key as k, rep_node as found from {_KEYS} where type_rank = {rank})"
        else:
            probe = value
            keys = (
                f"(select identifier_value as k, identity_id as found from {PYTHON_SCHEMA}.identity_map "
                f"where identifier_type = {_literal(t)})"
            )
        if found:
            probe = f"case when {' and '.join(f'{f} is null' for f in found)} then {probe} end"
        lookups.append(f"left join {keys} as m_{t} on m_{t}.k = {probe}")
        found.append(f"m_{t}.found")
    singleton = wh.sha256_hex("events.event_kind || ':' || events.event_id")
    joins = "\n        ".join(lookups)
    if by_key:
        rep = f"coalesce({', '.join(found)})"
        joins += f"\n        left join {_IDENTITIES} as identities on identities.rep_node = {rep}"
    resolved = "identities.identity_id" if by_key else ", ".join(found)
    return f"""
        with events as ({_EVENTS_SQL})
        select
            events.event_kind,
            events.event_id,
            coalesce({resolved}, 'evt_' || substr({singleton}, 1, 16)) as identity_id
        from events
        {joins}
    """


def node_values(wh: Warehouse, conn: Any) -> ValueLookup:
    """The graph's tie-breaking values, read from the scratch nodes table on demand: moving all 13M strings to
    Python cost ~2 s at 10M clicks, and only components with ties or splits read any."""

    def lookup(ids: np.ndarray) -> pa.Array:
        wanted = pd.DataFrame({"node": ids, "position": np.arange(len(ids), dtype=np.int64)})
        with wh.registered(_LOOKUP, wanted, conn) as name:
            found = wh.query_df(
                f"select wanted.position, nodes.identifier_value from {name} as wanted "
                f"inner join {_NODES} as nodes on nodes.node = wanted.node order by wanted.position",
                conn,
                arrow=True,
            )
        # A few thousand values: through Python lists, the same on both engines' frame types.
        return pa.array(found["identifier_value"].tolist(), type=pa.large_string())

    return lookup


@dataclass
class IdentityRun:
    stats: dict[str, int]
    n_map: int
    n_events: int
    by_kind: pd.DataFrame
    # Joins whose hash keys collided, redone on the identifier strings (a 64-bit hash collides about once in
    # 10^5 worlds of 10M identifiers).
    string_joins: list[str]
    timer: PhaseTimer


# For the identity transaction (see Warehouse.transaction), measured at 10M clicks:
# * nothing here depends on row order (the graph is resolved order-free, tested with shuffled input); without the
#   guarantee DuckDB's large joins and writes run in parallel: ~8 s of ~50 s;
# * the two tables' strings are hashes and hash-derived ids, which dictionary/FSST compression barely shrinks but
#   spends ~3 s analysing on every write of identity_map alone; they are stored plain (~0.6 GB more on disk).
IDENTITY_DUCKDB_SETTINGS: dict[str, object] = {
    "preserve_insertion_order": False,
    "disabled_compression_methods": "dict_fsst",
}


def resolve_in_warehouse(
    wh: Warehouse, conn: Any, limits: IdentityLimits, key_sql: KeySql = node_key_sql
) -> IdentityRun:
    """Write intermediate.identity_map and intermediate.event_identities on ``conn`` (the caller's transaction,
    best opened with :data:`IDENTITY_DUCKDB_SETTINGS`)."""
    timer = PhaseTimer()
    string_joins: list[str] = []
    with timer("nodes"):
        wh.temp_table_as(_NODES, nodes_sql(wh, limits, key_sql), conn)
    with timer("edges_and_fetch"):
        nodes = wh.query_df(f"select node, type_rank, node_key, first_seen_us from {_NODES}", conn, arrow=True)
        edges = wh.query_df(edges_sql(wh, limits, True, key_sql), conn, arrow=True)
        if len(edges) != int(wh.scalar(edge_count_sql(limits), conn) or 0):
            string_joins.append("edges")
            edges = wh.query_df(edges_sql(wh, limits, False), conn, arrow=True)
    with timer("resolve_graph"):
        labels, stats = resolve_identity_nodes(nodes, edges, limits, node_values(wh, conn))
        del edges
    with timer("name_identities"):
        wh.temp_table(_LABELS, labels, conn)
        wh.temp_table_as(_IDENTITIES, identities_sql(wh), conn)
    with timer("identity_map"):
        n_map = wh.replace_table_as(PYTHON_SCHEMA, "identity_map", identity_map_sql(), conn)
    with timer("event_identities"):
        if wh.target.is_duckdb:
            wh.temp_table(_KEYS, identity_keys_frame(nodes, labels), conn)
        else:
            wh.temp_table_as(_KEYS, identity_keys_sql(), conn)
        del nodes
        for name in (_NODES, _LABELS):
            wh.execute(f"drop table if exists {name}", conn)
        n_events = wh.replace_table_as(
            PYTHON_SCHEMA, "event_identities", event_identities_sql(wh, limits, True, key_sql), conn
        )
        if n_events != int(wh.scalar(event_count_sql(), conn) or 0):
            string_joins.append("events")
            events_sql = event_identities_sql(wh, limits, by_key=False)
            n_events = wh.replace_table_as(PYTHON_SCHEMA, "event_identities", events_sql, conn)
        # Distinct identities of conversions only: over 9M clicks the count cost ~0.7 s for a metadata figure.
        by_kind = wh.query_df(
            f"select event_kind, count(*) as events, "
            f"count(distinct case when event_kind = 'conversion' then identity_id end) as identities "
            f"from {PYTHON_SCHEMA}.event_identities group by event_kind order by event_kind",
            conn,
        )
    for name in _SCRATCH:
        wh.execute(f"drop table if exists {name}", conn)
    return IdentityRun(stats, n_map, n_events, by_kind, string_joins, timer)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            IDENTITY_MAP,
            deps=[INT_IDENTIFIERS, INT_IDENTITY_EDGES],
            description="Strong identifier (user_id, email hash, cookie, session) → stable identity_id.",
            group_name="identity",
        ),
        dg.AssetSpec(
            EVENT_IDENTITIES,
            deps=[INT_CLICKS, STG_CONVERSIONS],
            description="Every non-bot click and every conversion → the identity of its strong identifiers.",
            group_name="identity",
        ),
    ],
    pool="warehouse",
)
def identity_graph(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    wh = warehouse.get()
    limits = IdentityLimits.from_env()
    # One transaction: a crash never leaves identity_map and event_identities from different resolutions.
    with wh.transaction(IDENTITY_DUCKDB_SETTINGS) as conn:
        run = resolve_in_warehouse(wh, conn, limits)
    stats = run.stats
    yield dg.MaterializeResult(
        asset_key=IDENTITY_MAP,
        metadata={
            "dagster/row_count": run.n_map,
            "identities": stats["n_identities"],
            "identifiers": stats["n_identifiers"],
            "edges": stats["n_edges"],
            "components_split": stats["n_components_split"],
            "largest_identity": stats["largest_identity"],
            "limits": dg.MetadataValue.json(limits.as_dict()),
            "string_joins": dg.MetadataValue.json(run.string_joins),
            "seconds_by_phase": dg.MetadataValue.json(run.timer.seconds),
        },
    )
    yield dg.MaterializeResult(
        asset_key=EVENT_IDENTITIES,
        metadata={"dagster/row_count": run.n_events, "by_event_kind": table_metadata(run.by_kind)},
    )
