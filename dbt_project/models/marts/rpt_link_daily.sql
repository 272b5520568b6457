{#- One row per link and UTC day: clicks on the link that day (human / bot, distinct people) and the conversions
    and revenue credited to the link on that conversion day, one column pair per attribution model (wide, so a
    dashboard plots any model without pivoting). -#}
{%- set models = marts_attribution_models() -%}

with

clicks as (

    select
        cast(click_id as text) as click_id,
        cast(link_id as text) as link_id,
        cast(clicked_date as date) as clicked_date,
        coalesce(is_bot, false) as is_bot
    from {{ ref('int_clicks') }}
    where link_id is not null

),

click_identities as (

    select
        cast(event_id as text) as click_id,
        cast(identity_id as text) as identity_id
    from {{ ref('int_event_identities') }}
    where event_kind = 'click'

),

links as (

    select
        cast(link_id as text) as link_id,
        cast(creator_id as text) as creator_id,
        cast(campaign_id as text) as campaign_id,
        cast(channel as text) as channel
    from {{ ref('stg_raw__links') }}

),

credits as (

    select * from {{ ref('fct_attribution_credits') }}
    where not is_unattributed and link_id is not null

),

click_days as (

    select
        clicks.clicked_date as report_date,
        clicks.link_id,
        sum(case when clicks.is_bot then 0 else 1 end) as human_clicks,
        sum(case when clicks.is_bot then 1 else 0 end) as bot_clicks,
        count(distinct case when not clicks.is_bot then click_identities.identity_id end) as unique_identities
    from clicks
    left join click_identities
        on clicks.click_id = click_identities.click_id
    group by clicks.clicked_date, clicks.link_id

),

credit_days as (

    select
        conversion_date as report_date,
        link_id,
        {%- for model in models %}
        sum(case when model = '{{ model }}' then credit_share else 0 end) as conversions_{{ model }},
        sum(case when model = '{{ model }}' then credit_revenue else 0 end) as revenue_{{ model }},
        {%- endfor %}
        avg(case when model = 'last_touch' then match_probability end) as avg_confidence
    from credits
    group by conversion_date, link_id

),

link_days as (

    select report_date, link_id from click_days
    union
    select report_date, link_id from credit_days

),

final as (

    select
        cast(link_days.report_date as date) as report_date,
        cast(link_days.link_id as text) as link_id,
        links.creator_id,
        links.campaign_id,
        links.channel,
        cast(coalesce(click_days.human_clicks, 0) as bigint) as human_clicks,
        cast(coalesce(click_days.bot_clicks, 0) as bigint) as bot_clicks,
        cast(coalesce(click_days.unique_identities, 0) as bigint) as unique_identities,
        {%- for model in models %}
        cast(coalesce(credit_days.conversions_{{ model }}, 0) as numeric(18, 6)) as conversions_{{ model }},
        cast(coalesce(credit_days.revenue_{{ model }}, 0) as numeric(18, 2)) as revenue_{{ model }},
        {%- endfor %}
        {{ marts_round('credit_days.avg_confidence', 6) }} as avg_confidence
    from link_days
    left join click_days
        on link_days.report_date = click_days.report_date and link_days.link_id = click_days.link_id
    left join credit_days
        on link_days.report_date = credit_days.report_date and link_days.link_id = credit_days.link_id
    left join links
        on link_days.link_id = links.link_id

)

select * from final
