{#- Credit conservation, the invariant every attribution report relies on. Returns one row per violation:

    share   per conversion and model, credit_share (unattributed row included) sums to 1 within 1e-6; a
            conversion of fct_conversion_attribution without any credit row for a model counts as a violation
    revenue per model, credited plus unattributed credit_revenue equals the total revenue (reporting currency;
            a conversion without a usable rate counts 0) of the conversions to the cent. Only events of the
            configured conversion types (is_conversion) are credited. -#}
{#- Two parents: meta.dagster.ref makes it an asset check of fct_attribution_credits in Dagster. -#}
{{ config(meta={'dagster': {'ref': {'name': 'fct_attribution_credits'}}}) }}

with

conversions as (

    select conversion_id, coalesce(revenue, 0) as revenue
    from {{ ref('fct_conversion_attribution') }}
    where is_conversion

),

credits as (

    select * from {{ ref('fct_attribution_credits') }}

),

attribution_models as (

    select distinct model from credits

),

shares as (

    select conversion_id, model, sum(credit_share) as total_share
    from credits
    group by conversion_id, model

),

share_violations as (

    select
        'share' as violation,
        attribution_models.model,
        conversions.conversion_id,
        cast(shares.total_share as double precision) as actual,
        cast(1 as double precision) as expected
    from conversions
    cross join attribution_models
    left join shares
        on conversions.conversion_id = shares.conversion_id
        and attribution_models.model = shares.model
    where shares.total_share is null
        or abs(shares.total_share - 1) > 1e-6

),

credited_revenue as (

    select model, sum(credit_revenue) as credited
    from credits
    group by model

),

revenue_violations as (

    select
        'revenue' as violation,
        credited_revenue.model,
        cast(null as {{ dbt.type_string() }}) as conversion_id,
        cast(credited_revenue.credited as double precision) as actual,
        cast(totals.revenue as double precision) as expected
    from credited_revenue
    cross join (select sum(revenue) as revenue from conversions) as totals
    where abs(credited_revenue.credited - coalesce(totals.revenue, 0)) >= 0.005

)

select * from share_violations
union all
select * from revenue_violations
