{#- One row per channel and attribution model (every model, data-driven markov and shapley included, for every
    channel, zero-filled), plus one '(unattributed)' row per model, so a dashboard can put the models side by side
    and each model's rows add up to all conversions and all revenue. Credits on links unknown to `links` are
    channel '(unknown)'. -#}
{%- set models = marts_attribution_models() -%}

with

credits as (

    select * from {{ ref('fct_attribution_credits') }}

),

links as (

    select distinct cast(channel as text) as channel
    from {{ ref('stg_raw__links') }}
    where channel is not null

),

attribution_models as (

    {%- for model in models %}
    select cast('{{ model }}' as text) as model{% if not loop.last %} union all{% endif %}
    {%- endfor %}

),

credited as (

    select
        case
            when is_unattributed then '(unattributed)'
            else coalesce(channel, '(unknown)')
        end as channel,
        is_unattributed,
        model,
        sum(credit_share) as conversions,
        sum(credit_revenue) as revenue
    from credits
    group by 1, 2, 3

),

channels as (

    select channel, false as is_unattributed from links
    union
    select channel, is_unattributed from credited

),

grid as (

    select channels.channel, channels.is_unattributed, attribution_models.model
    from channels
    cross join attribution_models

),

filled as (

    select
        grid.channel,
        grid.model,
        grid.is_unattributed,
        coalesce(credited.conversions, 0) as conversions,
        coalesce(credited.revenue, 0) as revenue
    from grid
    left join credited
        on grid.channel = credited.channel
        and grid.model = credited.model
        and grid.is_unattributed = credited.is_unattributed

),

model_totals as (

    select
        model,
        sum(conversions) as total_conversions,
        sum(revenue) as total_revenue,
        sum(case when is_unattributed then 0 else revenue end) as attributed_revenue
    from filled
    group by model

),

final as (

    select
        cast(filled.channel as text) as channel,
        cast(filled.model as text) as model,
        cast(filled.is_unattributed as boolean) as is_unattributed,
        cast(filled.conversions as numeric(18, 6)) as conversions,
        cast(filled.revenue as numeric(18, 2)) as revenue,
        {{ marts_ratio('filled.conversions', 'model_totals.total_conversions', 6) }} as share_of_conversions,
        {{ marts_ratio('filled.revenue', 'model_totals.total_revenue', 6) }} as share_of_revenue,
        case
            when filled.is_unattributed then cast(null as double precision)
            else {{ marts_ratio('filled.revenue', 'model_totals.attributed_revenue', 6) }}
        end as share_of_attributed_revenue
    from filled
    inner join model_totals
        on filled.model = model_totals.model

)

select * from final
