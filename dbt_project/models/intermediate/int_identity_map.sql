{#- Every strong, non-blocked identifier (user_id, email hash, cookie, session) with the identity it was resolved
    into: the identity of its node's representative. Blocked identifiers are absent (events carrying one fall back
    to their other identifiers).

    Empty until the Python identity asset has written its first resolution (source python.identity_representatives). -#}

{{ config(
    tags=['after_identity_graph'],
    pre_hook="{{ link_attribution.identity_duckdb_write_settings(true) }}",
    post_hook="{{ link_attribution.identity_duckdb_write_settings(false) }}",
) }}


with

nodes as (

    {{ identity_nodes() }}

),

representatives as (

    {{ identity_representatives() }}

),

identities as (

    select * from {{ ref('int_identities') }}

),

final as (

    select
        {{ identity_type_name('nodes.type_rank') }} as identifier_type,
        nodes.identifier_value,
        identities.identity_id
    from nodes
    inner join representatives
        on representatives.node = nodes.node
    inner join identities
        on identities.rep_node = representatives.rep_node

)

select * from final
