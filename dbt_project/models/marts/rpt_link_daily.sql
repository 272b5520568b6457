{#- One row per link, UTC day and attribution model: clicks on the link that day (human / bot, distinct people)
    and the conversions and revenue (reporting currency) credited to the link on that conversion day under the
    model, with the link's creator, campaign and channel. The numbers come from int_report_entity_days, where every
    report's rules are written once. Updated for the run's days by the hourly job (macro marts_report_days_config),
    so older days show a re-delivered link's creator, campaign and channel from the next daily job on. -#}
{{ config(**marts_report_days_config()) }}

with

link_days as (

    select * from {{ ref('int_report_entity_days') }}
    where entity_type = 'link_id'
        and {{ marts_in_report_window('report_date') }}

),

links as (

    select
        cast(link_id as text) as link_id,
        cast(creator_id as text) as creator_id,
        cast(campaign_id as text) as campaign_id,
        cast(channel as text) as channel
    from {{ ref('stg_raw__links') }}

),

final as (

    select
        link_days.report_date,
        link_days.entity_value as link_id,
        links.creator_id,
        links.campaign_id,
        links.channel,
        link_days.model,
        link_days.human_clicks,
        link_days.bot_clicks,
        link_days.unique_identities,
        link_days.conversions,
        link_days.revenue,
        link_days.touched_conversions,
        link_days.unattributed_revenue,
        link_days.spend,
        link_days.cost_per_conversion,
        link_days.return_on_spend,
        link_days.currency,
        link_days.avg_confidence
    from link_days
    left join links
        on link_days.entity_value = links.link_id

)

select * from final
