{#- Pairs of strong identifiers (user_id, email, cookie, session) observed together, one row per unordered pair.
    The pair is stored in canonical order, left < right by (type, value) compared byte by byte, so (a, b) and (b, a)
    are one edge. Two sources of evidence:
      co-occurrence  both identifiers on one non-bot click or one conversion: edge_type '<left>-<right>';
      direct click   the conversion's cookie and the cookie of the non-bot click it carries in direct_click_id
                     (the same person in another browser or after a cookie reset): edge_type 'direct_click-cookie'.
    Fingerprints and IPs are shared by strangers, so they never make edges.

    The events are read wide (one row per event, one column per identifier type), the same events int_identifiers
    lists: a pair per two non-null columns is far cheaper than self-joining the long identifier list. Each pair of
    types is aggregated on its own (its edge_type is its own, so no edge spans two): a hash table keyed by two
    values of one pair instead of one keyed by five columns of all 10.6M edges of 10M clicks, which ran DuckDB out
    of its 2GB. -#}

{{ config(
    pre_hook="{{ link_attribution.preserve_insertion_order(false) }}",
    post_hook="{{ link_attribution.preserve_insertion_order(true) }}",
) }}

{#- (identifier type, column), in byte order of the type: the left column of every pair below is the smaller type. -#}
{%- set strong_identifiers = [
    ('cookie', 'cookie_id'),
    ('email', 'email_hash'),
    ('session', 'session_id'),
    ('user_id', 'user_id'),
] %}

with

clicks as (

    select * from {{ ref('int_clicks') }}
    where not is_bot

),

conversions as (

    select * from {{ ref('stg_raw__conversions') }}

),

events as not materialized (

    select
        clicked_at as observed_at,
        {%- for _, column in strong_identifiers %}
        cast({{ column }} as {{ dbt.type_string() }}) as {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from clicks

    union all

    select
        converted_at as observed_at,
        {%- for _, column in strong_identifiers %}
        cast({{ column }} as {{ dbt.type_string() }}) as {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from conversions

),

co_occurrences as (

    {%- for (left_type, left_column), (right_type, right_column) in int_ordered_pairs(strong_identifiers) %}
    select
        '{{ left_type }}' as left_type,
        {{ left_column }} as left_value,
        '{{ right_type }}' as right_type,
        {{ right_column }} as right_value,
        '{{ left_type }}-{{ right_type }}' as edge_type,
        count(*) as n_events,
        min(observed_at) as first_seen_at,
        max(observed_at) as last_seen_at
    from events
    where {{ left_column }} is not null
        and {{ right_column }} is not null
    group by {{ left_column }}, {{ right_column }}
    {{ "union all" if not loop.last }}
    {%- endfor %}

),

direct_clicks as (

    select
        'cookie' as left_type,
        case
            when {{ int_bytewise_less('conversions.cookie_id', 'clicks.cookie_id') }} then conversions.cookie_id
            else clicks.cookie_id
        end as left_value,
        'cookie' as right_type,
        case
            when {{ int_bytewise_less('conversions.cookie_id', 'clicks.cookie_id') }} then clicks.cookie_id
            else conversions.cookie_id
        end as right_value,
        conversions.converted_at as observed_at
    from conversions
    inner join clicks
        on conversions.direct_click_id = clicks.click_id
    where conversions.cookie_id is not null
        and clicks.cookie_id is not null
        and conversions.cookie_id <> clicks.cookie_id

),

direct_click_edges as (

    select
        left_type,
        left_value,
        right_type,
        right_value,
        'direct_click-cookie' as edge_type,
        count(*) as n_events,
        min(observed_at) as first_seen_at,
        max(observed_at) as last_seen_at
    from direct_clicks
    group by left_type, left_value, right_type, right_value

),

final as (

    select * from co_occurrences
    union all
    select * from direct_click_edges

)

select * from final
