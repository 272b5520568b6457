{#- One row per campaign, UTC day and attribution model: clicks on the campaign's links, conversions and revenue
    (reporting currency) credited to them, the revenue of their touched conversions that stays unattributed, and
    what they cost (spend, cost per conversion, return on spend). The numbers come from int_report_entity_days,
    where every report's rules are written once. -#}
{{ config(**marts_report_days_config()) }}

with

campaign_days as (

    select * from {{ ref('int_report_entity_days') }}
    where entity_type = 'campaign_id'
        and {{ marts_in_report_window('report_date') }}

),

final as (

    select
        report_date,
        entity_value as campaign_id,
        model,
        human_clicks,
        bot_clicks,
        conversions,
        revenue,
        touched_conversions,
        unattributed_revenue,
        spend,
        cost_per_conversion,
        return_on_spend,
        currency,
        avg_confidence
    from campaign_days

)

select * from final
