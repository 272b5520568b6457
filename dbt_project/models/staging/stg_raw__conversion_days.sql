{#- One row per UTC day that holds a conversion whose time staging accepts: the days `attribution run` covers.
    The runner reads this view (not the raw text) to choose a run's partition range, so a row dated 2026-02-30 or
    2099 - which staging rejects - can never stretch a run over thousands of empty partitions. A view over raw:
    it counts loads that no run has staged yet, and applies exactly the time branches of the staged model's
    reject reason (macro event_time_reject_reason). #}
{{ config(materialized='view') }}

with

raw_conversions as (
    select
        converted_at,
        _loaded_at
    from {{ source('raw', 'conversions') }}
),

cleaned as (
    select
        {{ clean_identifier('converted_at') }} as _converted_at_text,
        _loaded_at
    from raw_conversions
    {{ stage_fence() }}
),

typed as (
    select
        cleaned.*,
        {{ safe_cast_timestamptz('_converted_at_text') }} as converted_at
    from cleaned
    {{ stage_fence() }}
),

validated as (
    select
        typed.*,
        case
            {{ event_time_reject_reason('converted_at') }}
        end as _time_reject_reason
    from typed
    {{ stage_fence() }}
),

final as (
    select
        {{ utc_date('converted_at') }} as converted_date,
        count(*) as conversion_rows,
        max(_loaded_at) as last_loaded_at
    from validated
    where _time_reject_reason is null
    group by 1
)

select * from final
