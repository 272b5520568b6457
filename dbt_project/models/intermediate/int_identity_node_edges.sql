{#- int_identity_edges as pairs of node numbers (int_identity_nodes.node), with what the Python graph needs to split
    a component that breaks a per-identity limit: events, trust of the edge type, first and last seen. Edges that
    touch a blocked identifier drop out.

    Every endpoint is an identifier of int_identifiers (the same events), so a node unless blocked, and blocked
    ones are filtered here explicitly. Endpoints are joined on their 64-bit key: an endpoint whose key no other node
    shares finds exactly its own node; one whose key is shared also finds the other nodes of that key, all listed in
    int_identity_key_collisions (normally empty), whose strings must then match. Exact either way, at the cost of
    two lookups in that small table.

    A view: its one reader, the Python identity graph, reads it once; writing it first cost a table of every edge. -#}

{{ config(materialized='view', tags=['identity_graph']) }}

with

edges as (

    select * from {{ ref('int_identity_edges') }}
    where {{ identity_not_blocked('left_type', 'left_value') }}
        and {{ identity_not_blocked('right_type', 'right_value') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

collisions as (

    select * from {{ ref('int_identity_key_collisions') }}

),

final as (

    select
        left_nodes.node as u,
        right_nodes.node as v,
        edges.n_events,
        {{ identity_edge_trust('edges.edge_type') }} as trust,
        {{ epoch_us('edges.first_seen_at') }} as first_seen_us,
        {{ epoch_us('edges.last_seen_at') }} as last_seen_us
    from edges
    inner join nodes as left_nodes
        on left_nodes.node_key = {{ identity_node_key('edges.left_type', 'edges.left_value') }}
    inner join nodes as right_nodes
        on right_nodes.node_key = {{ identity_node_key('edges.right_type', 'edges.right_value') }}
    left join collisions as left_collisions
        on left_collisions.node = left_nodes.node
    left join collisions as right_collisions
        on right_collisions.node = right_nodes.node
    where (
            left_collisions.node is null
            or (
                left_collisions.type_rank = {{ identity_type_rank('edges.left_type') }}
                and left_collisions.identifier_value = edges.left_value
            )
        )
        and (
            right_collisions.node is null
            or (
                right_collisions.type_rank = {{ identity_type_rank('edges.right_type') }}
                and right_collisions.identifier_value = edges.right_value
            )
        )

)

select * from final
