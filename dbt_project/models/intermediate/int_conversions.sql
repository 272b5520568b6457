{#- One row per staged conversion event: whether its type counts as a conversion (var conversion_event_types) and
    its revenue in the reporting currency (var reporting_currency), converted by the warehouse's one exchange rule
    (int_fx_day_rates: the latest rate on or before its UTC day that is at most var fx_max_rate_age_days old). The
    original amount and currency stay beside it. Without a usable rate the conversion keeps a null
    reporting_revenue and fx_status 'missing_fx_rate': it is counted (rpt_attribution_quality) and left out of
    every converted sum, never summed unconverted. -#}
{%- set reporting = var('reporting_currency') | string | trim | upper %}
{%- set event_types = var('conversion_event_types') %}
{%- if event_types is string %}
    {%- set event_types = event_types.split(',') %}
{%- endif %}
{%- set event_types = event_types | map('string') | map('trim') | map('lower') | reject('equalto', '') | list %}
{%- if not event_types %}
    {{ exceptions.raise_compiler_error("var conversion_event_types must name at least one event type") }}
{%- endif %}

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

{#- The exchange rule lives in int_fx_day_rates, shared with spend. #}
day_rates as (
    select currency, on_date, fx_status, fx_rate, fx_rate_date
    from {{ ref('int_fx_day_rates') }}
),

classified as (
    select
        conversions.*,
        {#- An amount without a currency has no row in int_fx_day_rates: no rate. #}
        case
            when conversions.revenue is null then 'no_revenue'
            else coalesce(day_rates.fx_status, 'missing_fx_rate')
        end as fx_status,
        day_rates.fx_rate as _fx_rate,
        day_rates.fx_rate_date as _fx_rate_date
    from conversions
    left join day_rates
        on day_rates.currency = conversions.currency and day_rates.on_date = conversions.converted_date
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
        case
            when fx_status = 'same_currency' then cast(1 as numeric(38, 12))
            when fx_status = 'converted' then _fx_rate
        end as fx_rate,
        case when fx_status = 'converted' then _fx_rate_date end as fx_rate_date,
        case
            when fx_status = 'same_currency' then revenue
            when fx_status = 'converted' then {{ fx_converted('revenue', '_fx_rate') }}
        end as reporting_revenue,
        cast('{{ reporting }}' as {{ dbt.type_string() }}) as reporting_currency,
        fx_status
    from classified
)

select * from final
