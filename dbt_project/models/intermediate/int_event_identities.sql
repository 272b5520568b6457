{#- Every non-bot click and every conversion with the identity of its highest-priority resolved identifier
    (user_id > email > cookie > session), else an identity of its own: 'evt_' + the first 16 hex characters of
    sha256('<kind>:<id>'). Read by int_match_candidates (the identity signal), dim_identities and the attribution
    assets.

    Identifiers are looked up by 64-bit key among the nodes of their type, one lookup per type, each probing only the
    events the higher-priority ones left unmapped: four hash tables of integers, not of the 13M strings of 10M
    clicks. Like an edge endpoint, every identifier of these events is a node unless blocked, and blocked ones are
    excluded explicitly; a node whose key other nodes share (int_identity_key_collisions, normally none) matches
    only when its string equals the event's, so the result is exact.

    Empty until the Python identity asset has written its first resolution (source python.identity_representatives):
    the same as having no identities. -#}

{{ config(
    tags=['after_identity_graph'],
    pre_hook="{{ link_attribution.identity_duckdb_write_settings(true) }}",
    post_hook="{{ link_attribution.identity_duckdb_write_settings(false) }}",
) }}

{%- set representatives_relation = source('python', 'identity_representatives') %}
{%- set has_representatives = int_relation_exists(representatives_relation) %}
{%- set event_columns = identity_event_columns() %}
{#- Refs outside the branch below, so dbt sees the dependencies whichever branch renders. -#}
{%- set nodes_relation = ref('int_identity_nodes') %}
{%- set collisions_relation = ref('int_identity_key_collisions') %}
{%- set identities_relation = ref('int_identities') %}

with

events as (

    select
        'click' as event_kind,
        click_id as event_id,
        {%- for _, column in event_columns %}
        {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('int_clicks') }}
    where not is_bot

    union all

    select
        'conversion' as event_kind,
        conversion_id as event_id,
        {%- for _, column in event_columns %}
        {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('stg_raw__conversions') }}

),

{%- if has_representatives %}

nodes as (

    select * from {{ nodes_relation }}

),

representatives as (

    select * from {{ representatives_relation }}

),

collisions as (

    select * from {{ collisions_relation }}

),

-- Integers only, so the four lookups' hash tables stay small: a node's string is only carried when its key is
-- shared (int_identity_key_collisions, normally none), and then it must match the event's.
keyed_representatives as materialized (

    select
        nodes.type_rank,
        nodes.node_key,
        representatives.rep_node,
        collisions.identifier_value as colliding_value
    from nodes
    inner join representatives
        on representatives.node = nodes.node
    left join collisions
        on collisions.node = nodes.node

),

identities as (

    select * from {{ identities_relation }}

),

resolved as (

    select
        events.event_kind,
        events.event_id,
        identities.identity_id
    from events
    {%- set found = [] %}
    {%- for identifier_type, column in event_columns %}
    {%- set rank = loop.index0 %}
    {%- set value = 'events.' ~ column %}
    {%- set unmapped = found | join(' and ') if found else '1 = 1' %}
    {%- set probe = 'case when ' ~ unmapped ~ ' and ' ~ identity_not_blocked(identity_literal(identifier_type), value) ~ ' then ' %}
    left join (
        select node_key as k, rep_node as found, colliding_value from keyed_representatives
        where type_rank = {{ rank }}
    ) as {{ identifier_type }}_nodes
        on {{ identifier_type }}_nodes.k = {{ probe }}{{ identity_node_key(identity_literal(identifier_type), value) }} end
        and ({{ identifier_type }}_nodes.colliding_value is null or {{ identifier_type }}_nodes.colliding_value = {{ value }})
    {%- do found.append(identifier_type ~ '_nodes.found is null') %}
    {%- endfor %}
    left join identities
        on identities.rep_node = coalesce(
            {%- for identifier_type, _ in event_columns %}
            {{ identifier_type }}_nodes.found{{ ',' if not loop.last }}
            {%- endfor %}
        )

),

{%- else %}

resolved as (

    select
        events.event_kind,
        events.event_id,
        cast(null as {{ dbt.type_string() }}) as identity_id
    from events
    where 1 = 0

),

{%- endif %}

final as (

    select
        event_kind,
        event_id,
        coalesce(identity_id, {{ identity_short_hash('evt_', "event_kind || ':' || event_id") }}) as identity_id
    from resolved

)

select * from final
