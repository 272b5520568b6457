{#- The day after which journeys count for the data-driven (Markov / Shapley) weights: the newest conversion date
    minus var channel_fit_window_days, so the weights follow recent behaviour. Null before the first conversion
    (then every journey counts). One row; read by int_non_converting_paths and the Python channel_weights asset. -#}

with

conversions as (
    select converted_date from {{ ref('stg_raw__conversions') }}
),

final as (
    select
        cast(
            {{ dbt.dateadd('day', -1 * (var('channel_fit_window_days') | int), 'max(converted_date)') }} as date
        ) as starts_after
    from conversions
)

select * from final
