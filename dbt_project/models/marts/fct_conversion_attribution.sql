{#- One row per conversion: the last-touch link pick with its calibrated confidence, the signals behind it and
    the share that stays unattributed. Partitioned by UTC conversion date like fct_attribution_credits. -#}
{{
    config(
        tags=['partitioned'],
        pre_hook="{{ marts_delete_partition_window('conversion_date') }}",
        **incremental_config('conversion_id', 'fail', partition_by='conversion_date')
    )
}}

with

conversion_attribution as (

    select * from {{ source('python', 'conversion_attribution') }}
    where {{ marts_partition_filter('cast(conversion_date as date)') }}

),

final as (

    select
        cast(conversion_id as text) as conversion_id,
        cast(conversion_date as date) as conversion_date,
        cast(converted_at as timestamp with time zone) as converted_at,
        cast(event_type as text) as event_type,
        cast(revenue as numeric(18, 2)) as revenue,
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

)

select * from final
