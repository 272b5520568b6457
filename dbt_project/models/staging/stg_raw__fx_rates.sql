{#- One row per currency and day: the valid winner among the delivered versions of each rate (macro
    fx_rate_versions; a later load corrects an earlier one). A table rebuilt every run: rates are a few rows a day. #}

with

versions as (
    {{ fx_rate_versions() }}
),

final as (
    select
        fx_rate_id,
        rate_date,
        currency,
        rate,
        _loaded_at
    from versions
    where _version_rank = 1 and _reject_reason is null
)

select * from final
