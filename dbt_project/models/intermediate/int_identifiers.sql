{#- Every identifier observed on every non-bot click and every conversion, one row per (event, identifier type).
    Email and IP are the staging hashes; the raw values never leave schema raw.

    A view: its one reader, the identity graph, aggregates it straight away, and reads it as fast through the view
    as from a table, while writing the ~37M rows of 10M clicks took ~35 s of every run. -#}

{{ config(materialized='view') }}

{%- set identifier_columns = [
    ('user_id', 'user_id'),
    ('email', 'email_hash'),
    ('cookie', 'cookie_id'),
    ('session', 'session_id'),
    ('fingerprint', 'device_fingerprint'),
    ('ip', 'ip_hash'),
] %}

with

clicks as (

    select * from {{ ref('int_clicks') }}
    where not is_bot

),

conversions as (

    select * from {{ ref('stg_raw__conversions') }}

),

events as (

    select
        'click' as event_kind,
        click_id as event_id,
        clicked_at as observed_at,
        {%- for _, column in identifier_columns %}
        {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from clicks

    union all

    select
        'conversion' as event_kind,
        conversion_id as event_id,
        converted_at as observed_at,
        {%- for _, column in identifier_columns %}
        {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from conversions

),

final as (

    {%- for identifier_type, column in identifier_columns %}
    select
        '{{ identifier_type }}' as identifier_type,
        cast({{ column }} as {{ dbt.type_string() }}) as identifier_value,
        event_kind,
        event_id,
        observed_at
    from events
    where {{ column }} is not null
    {{ "union all" if not loop.last }}
    {%- endfor %}

)

select * from final
