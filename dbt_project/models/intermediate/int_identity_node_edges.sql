{#- int_identity_edges as pairs of node numbers (int_identity_nodes.node), with what the Python graph needs to split
    a component that breaks a per-identity limit: events, trust of the edge type, first and last seen. Edges that
    touch a blocked identifier drop out.

    Every endpoint is an identifier of int_identifiers (the same events), so a node unless blocked, and blocked
    ones are filtered here explicitly. An endpoint is therefore found by its 64-bit key among the nodes whose key
    no other node shares, or else by its strings among the nodes of int_identity_key_collisions (normally none):
    exact either way.

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

-- Integers only, so the two lookups' hash tables stay small.
keyed_nodes as (

    select
        nodes.node,
        nodes.node_key
    from nodes
    left join collisions
        on nodes.node_key = collisions.node_key
    where collisions.node_key is null

),

colliding_nodes as (

    select
        nodes.node,
        nodes.type_rank,
        nodes.identifier_value
    from nodes
    inner join collisions
        on nodes.node_key = collisions.node_key

),

final as (

    select
        coalesce(left_keyed.node, left_colliding.node) as u,
        coalesce(right_keyed.node, right_colliding.node) as v,
        edges.n_events,
        {{ identity_edge_trust('edges.edge_type') }} as trust,
        {{ epoch_us('edges.first_seen_at') }} as first_seen_us,
        {{ epoch_us('edges.last_seen_at') }} as last_seen_us
    from edges
    left join keyed_nodes as left_keyed
        on left_keyed.node_key = {{ identity_node_key('edges.left_type', 'edges.left_value') }}
    left join colliding_nodes as left_colliding
        on left_colliding.type_rank = {{ identity_type_rank('edges.left_type') }}
        and left_colliding.identifier_value = edges.left_value
    left join keyed_nodes as right_keyed
        on right_keyed.node_key = {{ identity_node_key('edges.right_type', 'edges.right_value') }}
    left join colliding_nodes as right_colliding
        on right_colliding.type_rank = {{ identity_type_rank('edges.right_type') }}
        and right_colliding.identifier_value = edges.right_value

)

select * from final
