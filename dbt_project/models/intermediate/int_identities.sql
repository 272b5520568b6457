{#- One row per resolved identity: the node of its earliest identifier (its representative, chosen by the Python
    identity graph: minimum first seen, then type priority, then value) and its name, 'idn_' + the first 16 hex
    characters of sha256('<type>:<value>') of that identifier. Hashed once per identity, not once per identifier,
    and stable across reruns, input order and growth that does not merge identities.

    Empty until the Python identity asset has written its first resolution (source python.identity_representatives). -#}

{#- Indexed on PostgreSQL: an hourly run of int_event_identities names only the identities its events found. -#}
{{ config(tags=['after_identity_graph'], **postgres_indexes([{'columns': ['rep_node']}])) }}


with

nodes as (

    {{ identity_nodes() }}

),

representatives as (

    {{ identity_representatives() }}

),

final as (

    select
        nodes.node as rep_node,
        {{ identity_short_hash('idn_', identity_type_name('nodes.type_rank') ~ " || ':' || nodes.identifier_value") }}
            as identity_id
    from nodes
    inner join representatives
        on representatives.node = nodes.node
    where representatives.rep_node = representatives.node

)

select * from final
