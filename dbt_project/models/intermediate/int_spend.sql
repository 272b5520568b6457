{#- One row per staged spend row with its amount in the reporting currency, converted by the one exchange rule
    (int_fx_day_rates) exactly as conversion revenue is. -#}

with

spend as (
    select
        spend_id,
        spend_date,
        entity_type,
        link_id,
        campaign_id,
        creator_id,
        channel,
        amount,
        currency
    from {{ ref('stg_raw__spend') }}
),

day_rates as (
    select currency, on_date, fx_status, fx_rate
    from {{ ref('int_fx_day_rates') }}
),

classified as (
    select
        spend.*,
        {#- An amount without a currency has no row in int_fx_day_rates: no rate. #}
        coalesce(day_rates.fx_status, 'missing_fx_rate') as fx_status,
        day_rates.fx_rate as _fx_rate
    from spend
    left join day_rates
        on day_rates.currency = spend.currency and day_rates.on_date = spend.spend_date
),

final as (
    select
        spend_id,
        spend_date,
        entity_type,
        link_id,
        campaign_id,
        creator_id,
        channel,
        amount,
        currency,
        fx_status,
        case
            when fx_status = 'same_currency' then amount
            when fx_status = 'converted' then {{ fx_converted('amount', '_fx_rate') }}
        end as reporting_amount
    from classified
)

select * from final
