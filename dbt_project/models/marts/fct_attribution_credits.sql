{#- Credit of every conversion (of the types in var conversion_event_types) per attribution model and touch, in the
    reporting currency, plus the unattributed remainder, with the credited
    link's campaign, creator and channel. Partitioned by UTC conversion date: a run with partition_start /
    partition_end rebuilds only those days (the pre-hook deletes the window, delete+insert on conversion_id
    replaces every credit row of a reprocessed conversion, so a touch that dropped out never lingers). -#}
{{
    config(
        tags=['partitioned'],
        **marts_by_day_config('conversion_date', 'conversion_id', partition_by='conversion_date')
    )
}}

with

credits as (

    select * from {{ source('python', 'attribution_credits') }}
    where {{ marts_partition_filter('cast(conversion_date as date)') }}

),

links as (

    select link_id, campaign_id, creator_id, channel from {{ ref('stg_raw__links') }}

),

final as (

    select
        cast({{ dbt.hash(
            "cast(credits.conversion_id as " ~ dbt.type_string() ~ ") || '|' || credits.model || '|' || "
            ~ "coalesce(cast(credits.click_id as " ~ dbt.type_string() ~ "), 'unattributed')"
        ) }} as text) as credit_id,
        cast(credits.conversion_id as text) as conversion_id,
        cast(credits.conversion_date as date) as conversion_date,
        cast(credits.model as text) as model,
        cast(credits.click_id as text) as click_id,
        cast(credits.link_id as text) as link_id,
        cast(links.campaign_id as text) as campaign_id,
        cast(links.creator_id as text) as creator_id,
        cast(links.channel as text) as channel,
        cast(credits.touch_position as integer) as touch_position,
        cast(credits.n_touches as integer) as n_touches,
        cast(credits.match_probability as double precision) as match_probability,
        cast(credits.decay_weight as double precision) as decay_weight,
        cast(credits.credit_share as double precision) as credit_share,
        cast(credits.credit_revenue as numeric(18, 2)) as credit_revenue,
        cast('{{ var("reporting_currency") | string | trim | upper }}' as text) as currency,
        cast(credits.is_unattributed as boolean) as is_unattributed
    from credits
    left join links
        on cast(credits.link_id as text) = cast(links.link_id as text)

)

select * from final
