{#- One row per conversion event: whether its type is a conversion, its revenue in the reporting currency beside the
    original amount and currency, the last-touch link pick with its calibrated confidence, the signals behind it
    and the share that stays unattributed. Partitioned by UTC conversion date like fct_attribution_credits. -#}
{{
    config(
        tags=['partitioned'],
        **marts_by_day_config('conversion_date', 'conversion_id', partition_by='conversion_date')
    )
}}

with

conversion_attribution as (

    select * from {{ source('python', 'conversion_attribution') }}
    where {{ marts_partition_filter('cast(conversion_date as date)') }}

),

{#- Money and the conversion-type flag come from int_conversions, the one definition the credits were split from. #}
conversions as (

    select * from {{ ref('int_conversions') }}
    where {{ marts_partition_filter('converted_date') }}

),

final as (

    select
        cast(conversion_attribution.conversion_id as text) as conversion_id,
        cast(conversion_attribution.conversion_date as date) as conversion_date,
        cast(conversion_attribution.converted_at as timestamp with time zone) as converted_at,
        cast(conversion_attribution.event_type as text) as event_type,
        cast(conversions.is_conversion as boolean) as is_conversion,
        cast(conversions.reporting_revenue as numeric(18, 2)) as revenue,
        cast(conversions.reporting_currency as text) as currency,
        cast(conversions.revenue as numeric(18, 2)) as original_revenue,
        cast(conversions.currency as text) as original_currency,
        cast(conversions.fx_rate as numeric(38, 12)) as fx_rate,
        cast(conversions.fx_rate_date as date) as fx_rate_date,
        cast(conversions.fx_status as text) as fx_status,
        cast(identity_id as text) as identity_id,
        cast(attributed_link_id as text) as attributed_link_id,
        cast(attributed_click_id as text) as attributed_click_id,
        cast(candidate_link_id as text) as candidate_link_id,
        cast(candidate_click_id as text) as candidate_click_id,
        cast(confidence_score as double precision) as confidence_score,
        cast(strongest_signal as text) as strongest_signal,
        cast(matched_signals as text) as matched_signals,
        cast(n_candidate_touches as integer) as n_candidate_touches,
        cast(is_attributed as boolean) as is_attributed,
        cast(unattributed_share as double precision) as unattributed_share
    from conversion_attribution
    left join conversions
        on cast(conversion_attribution.conversion_id as text) = cast(conversions.conversion_id as text)

)

select * from final
