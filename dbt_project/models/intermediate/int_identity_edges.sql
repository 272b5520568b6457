{#- Pairs of strong identifiers (user_id, email, cookie, session) observed together, one row per unordered pair.
    The pair is stored in canonical order, left < right by (type, value) compared byte by byte, so (a, b) and (b, a)
    are one edge. Two sources of evidence:
      co-occurrence  both identifiers on one non-bot click or one conversion: edge_type '<left>-<right>';
      direct click   the conversion's cookie and the cookie of the non-bot click it carries in direct_click_id
                     (the same person in another browser or after a cookie reset): edge_type 'direct_click-cookie'.
    Fingerprints and IPs are shared by strangers, so they never make edges.

    The events are read wide (one row per event, one column per identifier type), the same events int_identifiers
    lists: a pair per two non-null columns is far cheaper than self-joining the long identifier list. The rules are
    macros (identity_edges, identity_direct_click_pairs), which the hourly merge's
    int_identity_increment_edges applies to newly loaded events. -#}

{{ config(
    pre_hook="{{ link_attribution.preserve_insertion_order(false) }}",
    post_hook="{{ link_attribution.preserve_insertion_order(true) }}",
) }}

with

clicks as (

    select * from {{ ref('int_clicks') }}
    where not is_bot

),

conversions as (

    select * from {{ ref('stg_raw__conversions') }}

),

events as not materialized (

    {{ identity_events_wide('clicks', 'conversions') }}

),

direct_clicks as (

    {{ identity_direct_click_pairs('conversions', 'clicks') }}

),

final as (

    {{ identity_edges('events', 'direct_clicks') }}

)

select * from final
