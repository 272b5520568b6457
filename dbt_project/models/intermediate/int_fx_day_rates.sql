{#- The one exchange rule of the warehouse: for every (currency, UTC day) that an amount needs converting on
    (conversion revenue, spend), the factor to the reporting currency (var reporting_currency) at the latest rate
    on or before that day that is at most var fx_max_rate_age_days old. int_conversions and int_spend join it.

    Rates in stg_raw__fx_rates are "one unit is worth `rate` units of the base currency" (var fx_base_currency,
    worth 1 itself), so the factor from currency C to the reporting currency R on day d is rate(C, d) / rate(R, d),
    kept with 12 decimals on both engines (DuckDB divides decimals in double precision). Without a usable rate for
    C or R the factor is null: the amount is left out of every converted sum and counted, never summed
    unconverted. -#}
{%- set base = var('fx_base_currency') | string | trim | upper %}
{%- set reporting = var('reporting_currency') | string | trim | upper %}
{%- set max_age = var('fx_max_rate_age_days') | int %}
{%- for code in [base, reporting] %}
    {%- if not modules.re.match('^[A-Z]{3}$', code) %}
        {{ exceptions.raise_compiler_error("vars fx_base_currency and reporting_currency must be ISO 4217 codes, got '" ~ code ~ "'") }}
    {%- endif %}
{%- endfor %}

with

amounts as (
    select distinct currency, converted_date as on_date
    from {{ ref('stg_raw__conversions') }}
    where revenue is not null and currency is not null
    union
    select distinct currency, spend_date as on_date
    from {{ ref('stg_raw__spend') }}
),

rates as (
    select currency, rate_date, rate
    from {{ ref('stg_raw__fx_rates') }}
    where currency <> '{{ base }}'
),

{#- The (currency, day) pairs that need a rate: a few per day, so the "latest on or before" search runs on them,
    not on every amount. #}
needed as (
    select currency, on_date
    from amounts
    where currency <> '{{ base }}'
    {%- if reporting != base %}
    union
    select distinct '{{ reporting }}' as currency, on_date
    from amounts
    {%- endif %}
),

latest as (
    select
        needed.currency,
        needed.on_date,
        max(rates.rate_date) as rate_date
    from needed
    inner join rates
        on rates.currency = needed.currency
        and rates.rate_date <= needed.on_date
        and rates.rate_date >= cast({{ dbt.dateadd('day', -1 * max_age, 'needed.on_date') }} as date)
    group by needed.currency, needed.on_date
),

day_rates as (
    select latest.currency, latest.on_date, latest.rate_date, rates.rate
    from latest
    inner join rates
        on rates.currency = latest.currency and rates.rate_date = latest.rate_date
),

looked_up as (
    select
        amounts.currency,
        amounts.on_date,
        case
            when amounts.currency = '{{ base }}' then cast(1 as numeric(38, 12))
            else source_rate.rate
        end as _source_rate,
        source_rate.rate_date as _source_rate_date,
        {%- if reporting == base %}
        cast(1 as numeric(38, 12)) as _reporting_rate,
        cast(null as date) as _reporting_rate_date
        {%- else %}
        reporting_rate.rate as _reporting_rate,
        reporting_rate.rate_date as _reporting_rate_date
        {%- endif %}
    from amounts
    left join day_rates as source_rate
        on source_rate.currency = amounts.currency and source_rate.on_date = amounts.on_date
    {%- if reporting != base %}
    left join day_rates as reporting_rate
        on reporting_rate.currency = '{{ reporting }}' and reporting_rate.on_date = amounts.on_date
    {%- endif %}
),

final as (
    select
        currency,
        on_date,
        case
            when currency = '{{ reporting }}' then 'same_currency'
            when _source_rate is null or _reporting_rate is null then 'missing_fx_rate'
            else 'converted'
        end as fx_status,
        case
            when currency = '{{ reporting }}' then cast(1 as numeric(38, 12))
            when _source_rate is not null and _reporting_rate is not null
                then cast(_source_rate / _reporting_rate as numeric(38, 12))
        end as fx_rate,
        {#- The older of the two rates used (the base currency's own rate is no row). #}
        case
            when currency = '{{ reporting }}' or _source_rate is null or _reporting_rate is null
                then cast(null as date)
            when _reporting_rate_date is null or _source_rate_date < _reporting_rate_date
                then coalesce(_source_rate_date, _reporting_rate_date)
            else _reporting_rate_date
        end as fx_rate_date
    from looked_up
)

select * from final
