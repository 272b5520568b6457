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
import pandas as pd

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
from orchestration.warehouse import Warehouse
from python_models.identity import STRONG_TYPES, IdentityLimits, resolve_identity_nodes, trust_by_edge_type

# SQL of a join key for (type expression, value expression); tests swap in a colliding one.
KeySql = Callable[[Warehouse, str, str], str]

# Session-scoped scratch relations of one materialisation (temporary tables on both engines).
_NODES = "identity_nodes__tmp"
_LABELS = "identity_labels__tmp"
_IDENTITIES = "identity_ids__tmp"
_KEYS = "identity_keys__tmp"
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


def key_collisions_sql() -> str:
    return f"select count(*) - count(distinct node_key) from {_NODES}"


def _endpoint_join(side: str, by_key: bool, wh: Warehouse, key_sql: KeySql) -> str:
    type_col, value_col = f"edges.{side}_type", f"edges.{side}_value"
    alias = side[0]
    if by_key:
        return f"inner join {_NODES} as {alias} on {alias}.node_key = {key_sql(wh, type_col, value_col)}"
    return (
        f"inner join {_NODES} as {alias} "
        f"on {_type_name(f'{alias}.type_rank')} = {type_col} and {alias}.identifier_value = {value_col}"
    )


def edges_sql(wh: Warehouse, limits: IdentityLimits, by_key: bool = True, key_sql: KeySql = node_key_sql) -> str:
    """int_identity_edges as node-id pairs. Edges touching a blocked identifier drop out.

    ``by_key`` joins the endpoints on the nodes' hash key, exact when the key is unique over the nodes (checked
    by the caller) because every endpoint is an identifier of int_identifiers (the same events): a blocked one,
    the only kind missing from the nodes, is filtered here explicitly.
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
        where {_not_blocked(limits, "edges.left_type", "edges.left_value")}
            and {_not_blocked(limits, "edges.right_type", "edges.right_value")}
    """


def identities_sql(wh: Warehouse) -> str:
    """Each identity's name, 'idn_' + sha256('<type>:<value>')[:16] of its representative: hashed once per
    identity, not once per identifier."""
    digest = wh.sha256_hex(f"{_type_name('rep.type_rank')} || ':' || rep.identifier_value")
    return f"""
        select rep.node as rep_node, 'idn_' || substr({digest}, 1, 16) as identity_id
        from {_NODES} as rep
        where rep.node in (select rep_node from {_LABELS})
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


def identity_keys_sql(by_key: bool) -> str:
    """The lookup table of :func:`event_identities_sql`: type rank, join key (or value) and representative per
    node; integers only on the key path, so the four lookups' hash tables stay small."""
    return f"""
        select nodes.type_rank, nodes.{"node_key" if by_key else "identifier_value"}, labels.rep_node
        from {_NODES} as nodes
        inner join {_LABELS} as labels on labels.node = nodes.node
    """


def event_identities_sql(
    wh: Warehouse, limits: IdentityLimits, by_key: bool = True, key_sql: KeySql = node_key_sql
) -> str:
    """Every non-bot click and every conversion with the identity of its highest-priority mapped identifier
    (user_id > email > cookie > session), else 'evt_' + sha256('<kind>:<id>')[:16].

    Like :func:`edges_sql`, ``by_key`` looks identifiers up by hash key: every event identifier is an identifier
    of int_identifiers, so it is a node unless blocked, and blocked ones are excluded explicitly. Each lookup
    probes only events the higher-priority ones left unmapped."""
    lookups = []
    found: list[str] = []
    for rank, (t, column) in enumerate(_EVENT_COLUMNS.items()):
        value = f"events.{column}"
        probe = f"{key_sql(wh, _literal(t), value)}" if by_key else value
        if by_key:
            probe = f"case when {_not_blocked(limits, _literal(t), value)} then {probe} end"
        if found:
            probe = f"case when {' and '.join(f'{f} is null' for f in found)} then {probe} end"
        # One lookup per type over that type's nodes only: four hash tables of all 13M would not fit in memory.
        keys = f"(select * from {_KEYS} where type_rank = {rank})"
        lookups.append(f"left join {keys} as m_{t} on m_{t}.{'node_key' if by_key else 'identifier_value'} = {probe}")
        found.append(f"m_{t}.rep_node")
    singleton = wh.sha256_hex("events.event_kind || ':' || events.event_id")
    columns = ", ".join(_EVENT_COLUMNS.values())
    joins = "\n        ".join(lookups)
    return f"""
        with events as (
            select 'click' as event_kind, click_id as event_id, {columns}
            from intermediate.int_clicks
            where not is_bot
            union all
            select 'conversion' as event_kind, conversion_id as event_id, {columns}
            from staging.stg_raw__conversions
        )
        select
            events.event_kind,
            events.event_id,
            coalesce(identities.identity_id, 'evt_' || substr({singleton}, 1, 16)) as identity_id
        from events
        {joins}
        left join {_IDENTITIES} as identities on identities.rep_node = coalesce({", ".join(found)})
    """


@dataclass
class IdentityRun:
    labels: pd.DataFrame
    stats: dict[str, int]
    n_map: int
    n_events: int
    by_kind: pd.DataFrame
    key_collisions: int
    timer: PhaseTimer


def resolve_in_warehouse(
    wh: Warehouse, conn: Any, limits: IdentityLimits, key_sql: KeySql = node_key_sql
) -> IdentityRun:
    """Write intermediate.identity_map and intermediate.event_identities on ``conn`` (the caller's transaction)."""
    timer = PhaseTimer()
    if wh.target.is_duckdb:
        # Nothing here depends on row order (the graph is resolved order-free, tested with shuffled input);
        # without the guarantee DuckDB's large joins and writes run in parallel: ~8 s of ~50 s at 10M clicks.
        wh.execute("set preserve_insertion_order = false", conn)
    with timer("nodes"):
        wh.temp_table_as(_NODES, nodes_sql(wh, limits, key_sql), conn)
        collisions = int(wh.scalar(key_collisions_sql(), conn) or 0)
    # A 64-bit hash collides about once in 10^5 worlds of 10M identifiers; then the strings are joined instead.
    by_key = collisions == 0
    with timer("edges_and_fetch"):
        columns = "node, type_rank, identifier_value, first_seen_us"
        nodes = wh.query_df(f"select {columns} from {_NODES}", conn, arrow=True)
        edges = wh.query_df(edges_sql(wh, limits, by_key, key_sql), conn, arrow=True)
    with timer("resolve_graph"):
        labels, stats = resolve_identity_nodes(nodes, edges, limits)
        del nodes, edges
    with timer("identity_map"):
        wh.temp_table(_LABELS, labels, conn)
        wh.temp_table_as(_IDENTITIES, identities_sql(wh), conn)
        n_map = wh.replace_table_as(PYTHON_SCHEMA, "identity_map", identity_map_sql(), conn)
        wh.temp_table_as(_KEYS, identity_keys_sql(by_key), conn)
    for name in (_NODES, _LABELS):
        wh.execute(f"drop table if exists {name}", conn)
    with timer("event_identities"):
        events_sql = event_identities_sql(wh, limits, by_key, key_sql)
        n_events = wh.replace_table_as(PYTHON_SCHEMA, "event_identities", events_sql, conn)
        by_kind = wh.query_df(
            f"select event_kind, count(*) as events, count(distinct identity_id) as identities "
            f"from {PYTHON_SCHEMA}.event_identities group by event_kind order by event_kind",
            conn,
        )
    for name in _SCRATCH:
        wh.execute(f"drop table if exists {name}", conn)
    return IdentityRun(labels, stats, n_map, n_events, by_kind, collisions, timer)


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
    with wh.transaction() as conn:
        run = resolve_in_warehouse(wh, conn, limits)
    stats = run.stats
    sizes = run.labels["rep_node"].value_counts()
    yield dg.MaterializeResult(
        asset_key=IDENTITY_MAP,
        metadata={
            "dagster/row_count": run.n_map,
            "identities": stats["n_identities"],
            "identifiers": stats["n_identifiers"],
            "edges": stats["n_edges"],
            "components_split": stats["n_components_split"],
            "largest_identity": int(sizes.max()) if len(sizes) else 0,
            "limits": dg.MetadataValue.json(limits.as_dict()),
            "key_collisions": run.key_collisions,
            "seconds_by_phase": dg.MetadataValue.json(run.timer.seconds),
        },
    )
    yield dg.MaterializeResult(
        asset_key=EVENT_IDENTITIES,
        metadata={"dagster/row_count": run.n_events, "by_event_kind": table_metadata(run.by_kind)},
    )
