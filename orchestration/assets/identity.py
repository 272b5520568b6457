"""Identity resolution: connected components over strong identifier edges, with per-identity guards."""

import dagster as dg

from orchestration.assets.common import PYTHON_SCHEMA, table_metadata
from orchestration.assets.keys import (
    EVENT_IDENTITIES,
    IDENTITY_MAP,
    IDENTITY_PROFILES,
    INT_CLICKS,
    INT_IDENTIFIERS,
    INT_IDENTITY_EDGES,
)
from orchestration.resources import WarehouseResource
from python_models.identity import (
    STRONG_TYPES,
    IdentityLimits,
    event_identities,
    identity_profiles,
    resolve_identities,
)

_STRONG = ", ".join(f"'{t}'" for t in STRONG_TYPES)


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
            deps=[INT_IDENTIFIERS],
            description="Every click and conversion → the identity of its strong identifiers.",
            group_name="identity",
        ),
        dg.AssetSpec(
            IDENTITY_PROFILES,
            deps=[INT_IDENTIFIERS, INT_CLICKS],
            description="Per identity: first/last seen, identifier counts, devices, last user agent.",
            group_name="identity",
        ),
    ],
    pool="warehouse",
)
def identity_graph(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    wh = warehouse.get()
    limits = IdentityLimits.from_env()
    with wh.connect() as conn:
        identifiers = wh.query_df(
            "select identifier_type, identifier_value, min(observed_at) as first_seen_at, count(*) as n_events "
            f"from intermediate.int_identifiers where identifier_type in ({_STRONG}) group by 1, 2",
            conn,
        )
        edges = wh.query_df("select * from intermediate.int_identity_edges", conn)
        event_ids = wh.query_df(
            "select event_kind, event_id, identifier_type, identifier_value, observed_at "
            "from intermediate.int_identifiers",
            conn,
        )
        clicks = wh.query_df(
            "select click_id as event_id, clicked_at as observed_at, user_agent, device_family "
            "from intermediate.int_clicks where not is_bot",
            conn,
        )
    identity_map = resolve_identities(identifiers, edges, limits)
    events = event_identities(event_ids, identity_map)
    profiles = identity_profiles(event_ids, events, clicks)
    with wh.connect() as conn:
        wh.replace_table(identity_map, PYTHON_SCHEMA, "identity_map", conn)
        wh.replace_table(events, PYTHON_SCHEMA, "event_identities", conn)
        wh.replace_table(profiles, PYTHON_SCHEMA, "identity_profiles", conn)

    sizes = identity_map.groupby("identity_id").size()
    yield dg.MaterializeResult(
        asset_key=IDENTITY_MAP,
        metadata={
            "dagster/row_count": len(identity_map),
            "identities": int(sizes.size),
            "identifiers": len(identifiers),
            "edges": len(edges),
            "largest_identity": int(sizes.max()) if len(sizes) else 0,
            "limits": dg.MetadataValue.json(limits.as_dict()),
        },
    )
    yield dg.MaterializeResult(
        asset_key=EVENT_IDENTITIES,
        metadata={
            "dagster/row_count": len(events),
            "by_event_kind": table_metadata(events.groupby("event_kind").size().rename("events").reset_index()),
        },
    )
    yield dg.MaterializeResult(asset_key=IDENTITY_PROFILES, metadata={"dagster/row_count": len(profiles)})
