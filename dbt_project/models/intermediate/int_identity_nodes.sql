{#- The identity graph's nodes: one row per distinct strong, non-blocked identifier (user_id, email, cookie,
    session), numbered 0 .. n-1 for the Python graph (python_models.identity.resolve_identity_nodes), which only
    ever sees these integers. The numbering is arbitrary (the graph is resolved independently of it); identities
    are named after identifiers, never after node numbers.

    A node keeps its type as a small rank, not as text (a string per row made the later joins spill at 10M clicks),
    and a 64-bit hash of (type, value) as join key: joins of edges and events on it are ~3x faster than on the two
    strings. The nodes of keys that two nodes share are listed by int_identity_key_collisions, whose strings the joins
    check. Unlogged on PostgreSQL (no write-ahead log; rebuilt by every re-fit), and indexed there by key and number for
the hourly merge, which looks up only its new identifiers. -#}

{{ config(
    tags=['identity_graph'],
    unlogged=true,
    pre_hook="{{ link_attribution.identity_duckdb_write_settings(true) }}",
    post_hook="{{ link_attribution.identity_duckdb_write_settings(false) }}",
    **postgres_indexes([{'columns': ['node_key']}, {'columns': ['node']}])
) }}

{%- set strong_types = identity_strong_types() %}

with

identifiers as (

    select
        identifier_type,
        identifier_value,
        min(observed_at) as first_seen_at
    from {{ ref('int_identifiers') }}
    where identifier_type in ({% for t in strong_types %}{{ identity_literal(t) }}{{ ', ' if not loop.last }}{% endfor %})
        and {{ identity_not_blocked('identifier_type', 'identifier_value') }}
    group by identifier_type, identifier_value

),

final as (

    select
        {{ identity_node_number('identifier_type', 'identifier_value') }} as node,
        cast({{ identity_type_rank('identifier_type') }} as smallint) as type_rank,
        identifier_value,
        {{ identity_node_key('identifier_type', 'identifier_value') }} as node_key,
        {{ epoch_us('first_seen_at') }} as first_seen_us
    from identifiers

)

select * from final
