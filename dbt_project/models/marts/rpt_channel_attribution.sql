{#- One row per channel, UTC day and attribution model, plus an '(unattributed)' channel carrying the share no
    touch earns, so one model's rows add up to every conversion and all revenue (reporting currency). The numbers
    come from int_report_entity_days, where every report's rules are written once. -#}
{{ config(**marts_report_days_config()) }}

with

channel_days as (

    select * from {{ ref('int_report_entity_days') }}
    where entity_type = 'channel'
        and {{ marts_in_report_window('report_date') }}

),

final as (

    select
        report_date,
        entity_value as channel,
        cast(entity_value = '(unattributed)' as boolean) as is_unattributed,
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
    from channel_days

)

select * from final
