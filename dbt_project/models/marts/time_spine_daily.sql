{#- One row per UTC day: the time spine MetricFlow joins metrics to (configured as `time_spine` in
    _marts__models.yml). From var event_time_floor's day, the earliest an event may have, through 2035, so every
    day a report can hold is on it; a few thousand rows, rebuilt in milliseconds. -#}
{%- set first_day = (var('event_time_floor') | string)[:10] %}

with

days as (

    {{ dbt.date_spine('day', "cast('" ~ first_day ~ "' as date)", "cast('2036-01-01' as date)") }}

),

final as (

    select cast(date_day as date) as date_day
    from days

)

select * from final
