{#- The strong, non-blocked identifiers of the events loaded since the stored identity graph's mark
    (identity_graph_mark) and the ends of their edges (int_identity_increment_edges), one row each, with their node
    in int_identity_nodes when they already have one: what the hourly merge (the identity_graph asset) adds to the
    stored identities. An identifier first seen since the last re-fit has no node here; the merge numbers it (or
    finds it among the nodes earlier merges added).

    key_shared flags an identifier whose 64-bit key a different node of int_identity_nodes holds (normally never):
    the merge stops with an error then, as only the re-fit joins such keys exactly (int_identity_key_collisions).

    Built by the hourly job only: the daily re-fit reads int_identity_nodes. -#}

{{ config(tags=['identity_increment']) }}

{%- set mark = identity_graph_mark() %}

with

new_clicks as (

    select * from {{ ref('int_clicks') }}
    where not is_bot
        and {{ identity_since_mark(mark) }}

),

new_conversions as (

    select * from {{ ref('stg_raw__conversions') }}
    where {{ identity_since_mark(mark) }}

),

-- Read wide and turned long here rather than through int_identifiers: that view lists every event's identifiers,
-- and PostgreSQL cannot push the load filter into it.
events as not materialized (

    {{ identity_events_wide('new_clicks', 'new_conversions') }}

),

observed as (

    {%- for identifier_type, column in identity_edge_columns() %}
    select
        {{ identity_literal(identifier_type) }} as identifier_type,
        {{ column }} as identifier_value,
        {{ epoch_us('observed_at') }} as observed_us,
        _loaded_at
    from events
    where {{ column }} is not null
        and {{ identity_not_blocked(identity_literal(identifier_type), column) }}
    {{ 'union all' if not loop.last }}
    {%- endfor %}

),

-- A direct click can pair a new event with an earlier one's cookie: every edge end is listed.
edge_ends as (

    {%- for side in ['left', 'right'] %}
    select
        {{ identity_type_name(side ~ '_rank') }} as identifier_type,
        {{ side }}_value as identifier_value,
        first_seen_us as observed_us,
        cast(null as {{ dbt.type_timestamp() }}) as _loaded_at
    from {{ ref('int_identity_increment_edges') }}
    {{ 'union all' if not loop.last }}
    {%- endfor %}

),

identifiers as (

    select
        identifier_type,
        identifier_value,
        min(observed_us) as first_seen_us,
        max(_loaded_at) as last_loaded_at
    from (
        select * from observed
        union all
        select * from edge_ends
    ) as seen
    group by identifier_type, identifier_value

),

keyed as (

    select
        cast({{ identity_type_rank('identifier_type') }} as smallint) as type_rank,
        identifier_value,
        {{ identity_node_key('identifier_type', 'identifier_value') }} as node_key,
        first_seen_us,
        last_loaded_at
    from identifiers

),

nodes as (

    {{ identity_optional(ref('int_identity_nodes'),
        'select cast(null as bigint) as node, cast(null as smallint) as type_rank, cast(null as '
        ~ dbt.type_string() ~ ') as identifier_value, cast(null as bigint) as node_key') }}

),

final as (

    select
        keyed.type_rank,
        keyed.identifier_value,
        keyed.node_key,
        keyed.first_seen_us,
        keyed.last_loaded_at,
        max(case
            when nodes.type_rank = keyed.type_rank and nodes.identifier_value = keyed.identifier_value
                then nodes.node
        end) as node,
        count(case
            when nodes.type_rank <> keyed.type_rank or nodes.identifier_value <> keyed.identifier_value then 1
        end) > 0 as key_shared
    from keyed
    left join nodes
        on nodes.node_key = keyed.node_key
    group by keyed.type_rank, keyed.identifier_value, keyed.node_key, keyed.first_seen_us, keyed.last_loaded_at

)

select * from final
