{#- The journeys of identities that never converted, as path keys of the attribution grain (var attribution_grain),
    with how many identities took each: the non-converting paths that the Python channel_weights asset fits the
    Markov and Shapley weights on, beside the converting ones. Millions of non-converting clicks stay in the
    warehouse; a few thousand distinct paths come out.

    The definition is python_models.attribution.null_paths (tests compare the two): an identity's non-bot clicks
    within the lookback of its last click, in time order (click_id breaks ties); each step is the grain value, or
    '(unknown)' (UNKNOWN_GRAIN), followed by chr(31) (PATH_SEPARATOR). Only clicks after the channel-fit window's
    start count (int_channel_fit_window). -#}

{{ config(tags=['after_identity_graph']) }}

{%- set grain = var('attribution_grain') %}
{%- if grain not in ['channel', 'link_id', 'campaign_id', 'creator_id'] %}
    {{ exceptions.raise_compiler_error(
        "var attribution_grain (ATTRIBUTION_GRAIN) must be one of channel, link_id, campaign_id, creator_id; got "
        ~ grain
    ) }}
{%- endif %}

with

fit_window as (
    select starts_after from {{ ref('int_channel_fit_window') }}
),

{#- Events of other types (var conversion_event_types, e.g. add_to_cart) do not end a journey. #}
converters as (
    select identities.identity_id
    from {{ ref('int_event_identities') }} as identities
    inner join {{ ref('int_conversions') }} as conversions
        on conversions.conversion_id = identities.event_id
    where identities.event_kind = 'conversion' and conversions.is_conversion
),

clicks as (
    select
        identities.identity_id,
        clicks.click_id,
        clicks.clicked_at,
        coalesce(clicks.{{ grain }}, '(unknown)') || chr(31) as step,
        max(clicks.clicked_at) over (partition by identities.identity_id) as last_clicked_at
    from {{ ref('int_clicks') }} as clicks
    inner join {{ ref('int_event_identities') }} as identities
        on identities.event_kind = 'click' and identities.event_id = clicks.click_id
    cross join fit_window
    where not clicks.is_bot
        and (fit_window.starts_after is null or clicks.clicked_date > fit_window.starts_after)
        and identities.identity_id not in (select identity_id from converters)
),

paths as (
    select
        identity_id,
        {{ dbt.listagg('step', "''", 'order by clicked_at, click_id') }} as path_key
    from clicks
    where clicked_at >= {{ dbt.dateadd('day', -1 * (var('lookback_days') | int), 'last_clicked_at') }}
    group by identity_id
),

final as (
    select path_key, count(*) as identities
    from paths
    group by path_key
)

select * from final
