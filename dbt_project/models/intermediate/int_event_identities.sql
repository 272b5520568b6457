{#- Every non-bot click and every conversion with the identity of its highest-priority resolved identifier
    (user_id > email > cookie > session), else an identity of its own: 'evt_' + the first 16 hex characters of
    sha256('<kind>:<id>'). Read by int_match_candidates (the identity signal), dim_identities and the attribution
    assets.

    Identifiers are looked up by 64-bit key among the nodes of their type, one lookup per type, each probing only the
    events the higher-priority ones left unmapped: four hash tables of integers, not of the 13M strings of 10M
    clicks. Like an edge endpoint, every identifier of these events is a node unless blocked, and blocked ones are
    excluded explicitly; a node whose key other nodes share (int_identity_key_collisions, normally none) matches
    only when its string equals the event's, so the result is exact.

    The identities are those the Python identity asset left: the last re-fit's, with the hourly merges since
    applied (macros identity_nodes and identity_representatives). Incremental (delete+insert on the event; a table
    on Spark, which rebuilds it): an hourly run resolves the events loaded since its previous build and the events
    of identities a merge forwarded to another; a merge changes no other event's identity. After a re-fit, which
    may move any event, the model is rebuilt whole (config rebuild_after_identity_refit, see should_full_refresh).
    Every node is looked up by a full build; an hourly run looks up only the keys its events carry.

    Empty until the Python identity asset has written its first resolution (source python.identity_representatives):
    the same as having no identities. -#}

{{ config(
    tags=['after_identity_graph'],
    rebuild_after_identity_refit=true,
    pre_hook="{{ link_attribution.identity_duckdb_write_settings(true) }}",
    post_hook="{{ link_attribution.identity_duckdb_write_settings(false) }}",
    **incremental_config(['event_kind', 'event_id'], 'append_new_columns', indexes=[
        {'columns': ['event_id']},
        {'columns': ['identity_id']},
        {'columns': ['_loaded_at']},
    ])
) }}

{%- set representatives_relation = source('python', 'identity_representatives') %}
{%- set has_representatives = int_relation_exists(representatives_relation) %}
{%- set event_columns = identity_event_columns() %}
{#- Refs outside the branch below, so dbt sees the dependencies whichever branch renders. -#}
{%- set nodes_relation = ref('int_identity_nodes') %}
{%- set collisions_relation = ref('int_identity_key_collisions') %}
{%- set identities_relation = ref('int_identities') %}
{%- set added_relation = source('python', 'identity_added_nodes') %}
{%- set forwards_relation = source('python', 'identity_forwards') %}
{#- A table built before it kept load stamps has no watermark: that run rebuilds it (and adds the column). -#}
{%- set incremental = is_incremental() and (this is string
    or '_loaded_at' in (adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list)) %}

{#- Each source's events, as a select a condition can be appended to. -#}
{%- set event_sources = [
    ('click', ref('int_clicks'), 'click_id', 'not is_bot'),
    ('conversion', ref('stg_raw__conversions'), 'conversion_id', '1 = 1'),
] %}
{%- set event_selects = [] %}
{%- for kind, relation, id_column, condition in event_sources %}
{%- set event_select %}
    select
        '{{ kind }}' as event_kind,
        {{ id_column }} as event_id,
        _loaded_at,
        {%- for _, column in event_columns %}
        {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ relation }}
    where {{ condition }}
{%- endset %}
{%- do event_selects.append((kind, id_column, event_select)) %}
{%- endfor %}

with

all_events as not materialized (
    {%- for _, _, event_select in event_selects %}
    {{ event_select }}
    {{ 'union all' if not loop.last }}
    {%- endfor %}

),

{%- if incremental %}

-- An hourly run: the events loaded since the previous build, and those of the identities the hourly merges forwarded
-- to another (python.identity_forwards: each fitted or merged identity that joined an earlier one, since the last
-- re-fit). Every other event keeps the identity it has.
{%- if int_relation_has_rows(forwards_relation) %}
forwarded as materialized (

    select stored.event_kind, stored.event_id
    from {{ this }} as stored
    inner join {{ forwards_relation }} as forwards
        on forwards.old_identity_id = stored.identity_id

),
{%- endif %}

-- The forwarded events are read from each source by its id, not through all_events: PostgreSQL cannot probe a
-- union's index by a joined id, and sorted (or scanned) every click to find a few thousand (the hourly select at
-- L from a cold cache: 45.6 s, 18.9 s reading them by id; BENCHMARKS.md).
events as materialized (

    select * from all_events
    where _loaded_at > {{ stored_watermark(this, '_loaded_at') }}
    {%- if int_relation_has_rows(forwards_relation) %}
    {%- for kind, id_column, event_select in event_selects %}
    union
    {{ event_select }}
        and {{ id_column }} in (select event_id from forwarded where event_kind = '{{ kind }}')
    {%- endfor %}
    {%- endif %}

),

-- The keys the events carry, one row per (type, key): only their nodes are looked up.
event_keys as materialized (

    {%- for identifier_type, column in event_columns %}
    select {{ loop.index0 }} as type_rank, {{ identity_node_key(identity_literal(identifier_type), 'events.' ~ column) }} as node_key
    from events
    where events.{{ column }} is not null
    {{ 'union' if not loop.last }}
    {%- endfor %}

),

{%- else %}

events as (

    select * from all_events

),

{%- endif %}

{%- if has_representatives %}

{%- if incremental %}

nodes as materialized (

    {{ identity_nodes('node_key in (select node_key from event_keys)') }}

),

representatives as (

    {{ identity_representatives('node in (select node from nodes)') }}

),

{%- else %}

nodes as (

    {{ identity_nodes() }}

),

representatives as (

    {{ identity_representatives() }}

),

{%- endif %}

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

-- The fitted identities' names, and those of identities the hourly merges founded since (a new identifier that
-- is its own representative), named by the same rule.
identities as (

    select rep_node, identity_id from {{ identities_relation }}
    {%- if incremental %}
    where rep_node in (select rep_node from keyed_representatives)
    {%- endif %}
    {%- if int_relation_has_rows(added_relation) %}
    union all
    select
        node as rep_node,
        {{ identity_short_hash('idn_', identity_type_name('type_rank') ~ " || ':' || identifier_value") }} as identity_id
    from {{ added_relation }}
    where node = rep_node
    {%- endif %}

),

resolved as (

    select
        events.event_kind,
        events.event_id,
        events._loaded_at,
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
        events._loaded_at,
        cast(null as {{ dbt.type_string() }}) as identity_id
    from events
    where 1 = 0

),

{%- endif %}

final as (

    select
        event_kind,
        event_id,
        coalesce(identity_id, {{ identity_short_hash('evt_', "event_kind || ':' || event_id") }}) as identity_id,
        _loaded_at,
        {%- set fitted_at = identity_fitted_at() %}
        {{ identity_literal(fitted_at) if fitted_at is not none else 'cast(null as ' ~ dbt.type_string() ~ ')' }}
            as _identities_fitted_at
    from resolved

)

select * from final
