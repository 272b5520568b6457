{#- Join keys (int_identity_nodes.node_key, a 64-bit hash) that more than one node shares: normally none (about
    one collision in 10^5 graphs of 13M identifiers). The identity models join every other node on its key alone,
    and the nodes of these keys on (type, value), so every join is exact whatever the hash does. -#}

{{ config(tags=['identity_graph']) }}

with

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

final as (

    select
        node_key,
        count(*) as n_nodes
    from nodes
    group by node_key
    having count(*) > 1

)

select * from final
