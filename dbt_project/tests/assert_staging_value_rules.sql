{#- Row rules of the staged tables that generic tests cannot express: a click is a bot exactly when a reason
    says why; staged revenue lies in [0, max_revenue], and a positive revenue comes with a currency (its code is
    checked against the ISO 4217 seed by a relationships test). -#}
with clicks as (
    select 'stg_raw__clicks' as model, click_id as record_key, 'is_bot disagrees with bot_reason' as problem
    from {{ ref('stg_raw__clicks') }}
    where is_bot <> (bot_reason is not null)
),

conversions as (
    select 'stg_raw__conversions' as model, conversion_id as record_key, 'revenue or currency out of rule' as problem
    from {{ ref('stg_raw__conversions') }}
    where revenue < 0
        or revenue > {{ var('max_revenue') }}
        or (revenue > 0 and (currency is null or length(currency) <> 3))
)

select * from clicks
union all
select * from conversions
