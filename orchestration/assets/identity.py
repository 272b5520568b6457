"""Identity resolution: connected components over strong identifier edges, with per-identity guards.

The warehouse does the string work (grouping identifiers, numbering them, joining edges to numbers, naming
identities, giving every event its identity); Python resolves the integer-coded graph
(:func:`python_models.identity.resolve_identity_nodes`). Pulling 13M identifier strings into pandas and hashing
them there cost more than the whole graph algorithm.
"""

import dagster as dg

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

# Session-scoped scratch relations of one materialisation (temporary tables on both engines).
_NODES = "identity_nodes__tmp"
_EDGES = "identity_edges__tmp"
_LABELS = "identity_labels__tmp"

# Columns of the events' strong identifiers, in STRONG_TYPES (priority) order.
_EVENT_COLUMNS = {"user_id": "user_id", "email": "email_hash", "cookie": "cookie_id", "session": "session_id"}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _case(column: str, mapping: dict[str, int], default: int) -> str:
    whens = " ".join(f"when {_literal(k)} then {v}" for k, v in sorted(mapping.items()))
    return f"case {column} {whens} else {default} end"


def nodes_sql(wh: Warehouse, limits: IdentityLimits) -> str:
    """One row per distinct strong, non-blocked identifier with a node id (0 .. n-1, in no particular order)."""
    strong = ", ".join(_literal(t) for t in STRONG_TYPES)
    blocked = [f"{t}:{v}" for t, v in sorted(limits.blocked_values) if t in STRONG_TYPES]
    not_blocked = (
        f"and identifier_type || ':' || identifier_value not in ({', '.join(_literal(b) for b in blocked)})"
        if blocked
        else ""
    )
    type_rank = _case("identifier_type", {t: i for i, t in enumerate(STRONG_TYPES)}, -1)
    return f"""
        select
            row_number() over () - 1 as node,
            identifier_type,
            {type_rank} as type_rank,
            identifier_value,
            first_seen_at,
            {wh.epoch_us("first_seen_at")} as first_seen_us
        from (
            select identifier_type, identifier_value, min(observed_at) as first_seen_at
            from intermediate.int_identifiers
            where identifier_type in ({strong}) {not_blocked}
            group by identifier_type, identifier_value
        ) as identifiers
    """


def edges_sql(wh: Warehouse, limits: IdentityLimits) -> str:
    """int_identity_edges as node-id pairs; edges touching a blocked (absent) identifier drop out of the join."""
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
        inner join {_NODES} as l
            on l.identifier_type = edges.left_type and l.identifier_value = edges.left_value
        inner join {_NODES} as r
            on r.identifier_type = edges.right_type and r.identifier_value = edges.right_value
    """


def identity_map_sql(wh: Warehouse) -> str:
    """Every node with the id of its identity: 'idn_' + sha256('<type>:<value>')[:16] of the representative."""
    digest = wh.sha256_hex("rep.identifier_type || ':' || rep.identifier_value")
    return f"""
        with representatives as (
            select distinct rep_node from {_LABELS}
        ),
        identities as (
            select rep.node, 'idn_' || substr({digest}, 1, 16) as identity_id
            from {_NODES} as rep
            inner join representatives on representatives.rep_node = rep.node
        )
        select nodes.identifier_type, nodes.identifier_value, identities.identity_id
        from {_NODES} as nodes
        inner join {_LABELS} as labels on labels.node = nodes.node
        inner join identities on identities.node = labels.rep_node
    """


def event_identities_sql(wh: Warehouse) -> str:
    """Every non-bot click and every conversion with the identity of its highest-priority mapped identifier
    (user_id > email > cookie > session), else 'evt_' + sha256('<kind>:<id>')[:16]."""
    lookups = "\n".join(
        f"""left join (select identifier_value, identity_id from {PYTHON_SCHEMA}.identity_map
                   where identifier_type = {_literal(t)}) as m_{t}
            on m_{t}.identifier_value = events.{column}"""
        for t, column in _EVENT_COLUMNS.items()
    )
    singleton = wh.sha256_hex("events.event_kind || ':' || events.event_id")
    ids = ", ".join(f"m_{t}.identity_id" for t in _EVENT_COLUMNS)
    columns = ", ".join(_EVENT_COLUMNS.values())
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
            coalesce({ids}, 'evt_' || substr({singleton}, 1, 16)) as identity_id
        from events
        {lookups}
    """


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
    timer = PhaseTimer()
    # One transaction: a crash never leaves identity_map and event_identities from different resolutions.
    with wh.transaction() as conn:
        if wh.target.is_duckdb:
            # Nothing here depends on row order (the graph is resolved order-free, tested with shuffled input);
            # without the guarantee DuckDB's large joins and writes run in parallel: ~8 s of ~50 s at 10M clicks.
            wh.execute("set preserve_insertion_order = false", conn)
        for name, sql in ((_NODES, nodes_sql(wh, limits)), (_EDGES, edges_sql(wh, limits))):
            with timer(name.removesuffix("__tmp")):
                wh.execute(f"drop table if exists {name}", conn)
                wh.execute(f"create temporary table {name} as {sql}", conn)
                if not wh.target.is_duckdb:
                    wh.execute(f"analyze {name}", conn)
        with timer("fetch_graph"):
            columns = "node, type_rank, identifier_value, first_seen_us"
            nodes = wh.query_df(f"select {columns} from {_NODES}", conn, arrow=True)
            edges = wh.query_df(f"select * from {_EDGES}", conn, arrow=True)
        with timer("resolve_graph"):
            labels, stats = resolve_identity_nodes(nodes, edges, limits)
            del nodes, edges
        with timer("identity_map"), wh.registered(_LABELS, labels, conn):
            n_map = wh.replace_table_as(PYTHON_SCHEMA, "identity_map", identity_map_sql(wh), conn)
        with timer("event_identities"):
            n_events = wh.replace_table_as(PYTHON_SCHEMA, "event_identities", event_identities_sql(wh), conn)
        by_kind = wh.query_df(
            f"select event_kind, count(*) as events, count(distinct identity_id) as identities "
            f"from {PYTHON_SCHEMA}.event_identities group by event_kind order by event_kind",
            conn,
        )
        for name in (_NODES, _EDGES):
            wh.execute(f"drop table if exists {name}", conn)

    sizes = labels["rep_node"].value_counts()
    yield dg.MaterializeResult(
        asset_key=IDENTITY_MAP,
        metadata={
            "dagster/row_count": n_map,
            "identities": stats["n_identities"],
            "identifiers": stats["n_identifiers"],
            "edges": stats["n_edges"],
            "components_split": stats["n_components_split"],
            "largest_identity": int(sizes.max()) if len(sizes) else 0,
            "limits": dg.MetadataValue.json(limits.as_dict()),
            "seconds_by_phase": dg.MetadataValue.json(timer.seconds),
        },
    )
    yield dg.MaterializeResult(
        asset_key=EVENT_IDENTITIES,
        metadata={"dagster/row_count": n_events, "by_event_kind": table_metadata(by_kind)},
    )
