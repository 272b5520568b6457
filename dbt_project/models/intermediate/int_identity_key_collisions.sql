{#- The nodes of int_identity_nodes whose join key (node_key, a 64-bit hash) another node shares: normally none
    (about one collision in 10^5 graphs of 13M identifiers). The identity models join every node on its key alone
    and check the strings of these few, so every join is exact whatever the hash does. A table of the colliding
    nodes themselves, so those checks never scan the nodes again. Only read by the daily identity step, so unlogged
    on PostgreSQL (no write-ahead log; rebuilt by every run). -#}

{{ config(tags=['identity_graph'], unlogged=true) }}

with

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

shared_keys as (

    select node_key
    from nodes
    group by node_key
    having count(*) > 1

),

final as (

    select
        nodes.node,
        nodes.node_key,
        nodes.type_rank,
        nodes.identifier_value
    from nodes
    inner join shared_keys
        on nodes.node_key = shared_keys.node_key

)

select * from final
