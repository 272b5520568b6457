{#- The identity edges of the events loaded since the stored identity graph's mark (identity_graph_mark: its last
    re-fit or hourly merge), by the rules of int_identity_edges (its macros), counted over those events only: what
    the hourly merge (the identity_graph asset) unites with the stored identities. A direct click can pair a new
    conversion with any click, or an earlier conversion with a new click. Ends are given as (type rank, value), as
    the merge numbers the new identifiers itself; edges touching a blocked identifier drop out.

    Built by the hourly job only: the daily re-fit reads int_identity_edges. -#}

{{ config(tags=['identity_increment']) }}

{%- set mark = identity_graph_mark() %}

with

clicks as not materialized (

    select * from {{ ref('int_clicks') }}
    where not is_bot

),

conversions as not materialized (

    select * from {{ ref('stg_raw__conversions') }}

),

new_clicks as (

    select * from clicks
    where {{ identity_since_mark(mark) }}

),

new_conversions as (

    select * from conversions
    where {{ identity_since_mark(mark) }}

),

earlier_conversions as (

    select * from conversions
    where not ({{ identity_since_mark(mark) }})

),

events as not materialized (

    {{ identity_events_wide('new_clicks', 'new_conversions') }}

),

direct_clicks as (

    {{ identity_direct_click_pairs('new_conversions', 'clicks') }}
    union all
    {{ identity_direct_click_pairs('earlier_conversions', 'new_clicks') }}

),

edges as (

    {{ identity_edges('events', 'direct_clicks') }}

),

final as (

    select
        cast({{ identity_type_rank('left_type') }} as smallint) as left_rank,
        left_value,
        cast({{ identity_type_rank('right_type') }} as smallint) as right_rank,
        right_value,
        n_events,
        {{ identity_edge_trust('edge_type') }} as trust,
        {{ epoch_us('first_seen_at') }} as first_seen_us,
        {{ epoch_us('last_seen_at') }} as last_seen_us
    from edges
    where {{ identity_not_blocked('left_type', 'left_value') }}
        and {{ identity_not_blocked('right_type', 'right_value') }}

)

select * from final
