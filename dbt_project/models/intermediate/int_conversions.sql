{#- One row per staged conversion event: whether its type counts as a conversion (var conversion_event_types) and
    its revenue in the reporting currency (var reporting_currency), converted at the latest rate on or before its
    UTC day that is at most var fx_max_rate_age_days old. The original amount and currency stay beside it.

    Rates in stg_raw__fx_rates are "one unit is worth `rate` units of the base currency" (var fx_base_currency,
    worth 1 itself), so the factor from currency C to the reporting currency R on day d is rate(C, d) / rate(R, d).
    Without a usable rate for C or R the conversion keeps a null reporting_revenue and fx_status 'missing_fx_rate':
    it is counted (rpt_attribution_quality) and left out of every converted sum, never summed unconverted. -#}
{%- set base = var('fx_base_currency') | string | trim | upper %}
{%- set reporting = var('reporting_currency') | string | trim | upper %}
{%- set max_age = var('fx_max_rate_age_days') | int %}
{%- set event_types = var('conversion_event_types') %}
{%- if event_types is string %}
    {%- set event_types = event_types.split(',') %}
{%- endif %}
{%- set event_types = event_types | map('string') | map('trim') | map('lower') | reject('equalto', '') | list %}
{%- if not event_types %}
    {{ exceptions.raise_compiler_error("var conversion_event_types must name at least one event type") }}
{%- endif %}
{%- for code in [base, reporting] %}
    {%- if not modules.re.match('^[A-Z]{3}$', code) %}
        {{ exceptions.raise_compiler_error("vars fx_base_currency and reporting_currency must be ISO 4217 codes, got '" ~ code ~ "'") }}
    {%- endif %}
{%- endfor %}

with

conversions as (
    select
        conversion_id,
        converted_at,
        converted_date,
        event_type,
        revenue,
        currency
    from {{ ref('stg_raw__conversions') }}
),

rates as (
    select currency, rate_date, rate
    from {{ ref('stg_raw__fx_rates') }}
    where currency <> '{{ base }}'
),

{#- The (currency, day) pairs that need a rate: a few per day, so the "latest on or before" search runs on them,
    not on every conversion. #}
needed as (
    select distinct currency, converted_date as on_date
    from conversions
    where revenue is not null and currency is not null and currency <> '{{ base }}'
    {%- if reporting != base %}
    union
    select distinct '{{ reporting }}' as currency, converted_date as on_date
    from conversions
    where revenue is not null
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
        conversions.*,
        case
            when conversions.currency = '{{ base }}' then cast(1 as numeric(38, 12))
            else source_rate.rate
        end as _source_rate,
        source_rate.rate_date as _source_rate_date,
        {%- if reporting == base %}
        cast(1 as numeric(38, 12)) as _reporting_rate,
        {%- else %}
        reporting_rate.rate as _reporting_rate,
        {%- endif %}
        {%- if reporting == base %}
        cast(null as date) as _reporting_rate_date
        {%- else %}
        reporting_rate.rate_date as _reporting_rate_date
        {%- endif %}
    from conversions
    left join day_rates as source_rate
        on source_rate.currency = conversions.currency and source_rate.on_date = conversions.converted_date
    {%- if reporting != base %}
    left join day_rates as reporting_rate
        on reporting_rate.currency = '{{ reporting }}' and reporting_rate.on_date = conversions.converted_date
    {%- endif %}
),

classified as (
    select
        looked_up.*,
        case
            when revenue is null then 'no_revenue'
            when currency = '{{ reporting }}' then 'same_currency'
            when _source_rate is null or _reporting_rate is null then 'missing_fx_rate'
            else 'converted'
        end as fx_status
    from looked_up
),

final as (
    select
        conversion_id,
        converted_at,
        converted_date,
        event_type,
        event_type in ({% for t in event_types %}'{{ t }}'{{ ', ' if not loop.last }}{% endfor %}) as is_conversion,
        revenue,
        currency,
        {#- 12 decimals on both engines (DuckDB divides decimals in double precision). #}
        case
            when fx_status = 'same_currency' then cast(1 as numeric(38, 12))
            when fx_status = 'converted' then cast(_source_rate / _reporting_rate as numeric(38, 12))
        end as fx_rate,
        case
            when fx_status = 'converted' then
                case
                    when _reporting_rate_date is null or _source_rate_date < _reporting_rate_date
                        then coalesce(_source_rate_date, _reporting_rate_date)
                    else _reporting_rate_date
                end
        end as fx_rate_date,
        case
            when fx_status = 'same_currency' then revenue
            when fx_status = 'converted'
                then cast(round(revenue * cast(_source_rate / _reporting_rate as numeric(38, 12)), 2) as numeric(18, 2))
        end as reporting_revenue,
        cast('{{ reporting }}' as {{ dbt.type_string() }}) as reporting_currency,
        fx_status
    from classified
)

select * from final
