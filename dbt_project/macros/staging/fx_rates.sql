{#- fx_rate_versions(): every raw.fx_rates row cleaned, typed, with its reject reason and its version rank, as
    the body of a subquery. stg_raw__fx_rates keeps the valid best versions, rejected_rows the invalid ones: one
    definition, so every raw key lands in exactly one of the two.

    A key is (currency, rate_date): one rate per currency and day, to the base currency (var fx_base_currency),
    as "one unit of currency is worth `rate` units of the base". The base currency is worth 1 on every day
    without a row; a row for it must say 1. Rates are kept with 12 decimals: a yen is worth less than a cent, and
    six decimals would move a large yen amount by a cent. -#}
{% macro fx_rate_versions() -%}
    {%- set raw_columns = ['rate_date', 'currency', 'rate'] -%}
    {%- set base = var('fx_base_currency') | string | trim | upper -%}
    select
        typed.*,
        case
            when rate_date is not null and currency is not null
                then currency || '|' || cast(rate_date as {{ dbt.type_string() }})
        end as fx_rate_id,
        case when _reject_reason is null then cast(_rate_text as numeric(38, 12)) end as rate,
        {{ version_rank('fx_rate_key', raw_columns) }} as _version_rank
    from (
        select
            typed.*,
            case
                when _rate_date_text is null then 'missing_rate_date'
                when rate_date is null then 'invalid_rate_date'
                when currency is null then 'missing_currency'
                when {{ is_invalid_currency('currency') }} then 'invalid_currency'
                when _rate_text is null then 'missing_rate'
                when _rate_number is null then 'invalid_rate'
                when _rate_number <= 0 or _rate_number > 1000000000 then 'rate_out_of_range'
                when currency = '{{ base }}' and _rate_number <> 1 then 'base_currency_rate_not_one'
            end as _reject_reason,
            {#- Rows without a usable key rank among themselves under one null key; rejected_rows keeps them all. #}
            case
                when rate_date is not null and currency is not null
                    then currency || '|' || cast(rate_date as {{ dbt.type_string() }})
            end as fx_rate_key
        from (
            select
                cleaned.*,
                case
                    when {{ regex_full_match('_rate_date_text', '[0-9]{4}-[0-9]{2}-[0-9]{2}') }}
                        then {{ utc_date(safe_cast_timestamptz("_rate_date_text || 'T00:00:00+00:00'")) }}
                end as rate_date,
                {{ safe_cast_numeric('_rate_text') }} as _rate_number
            from (
                select
                    {{ clean_identifier('rate_date') }} as _rate_date_text,
                    upper({{ clean_identifier('currency') }}) as currency,
                    {{ clean_text('rate') }} as _rate_text,
                    {%- for column in raw_columns %}
                    {{ column }} as _raw_{{ column }},
                    {%- endfor %}
                    _source_file,
                    _loaded_at
                from {{ source('raw', 'fx_rates') }}
            ) as cleaned
        ) as typed
    ) as typed
{%- endmacro %}
