{#- How much of the business the attribution explains, how trustworthy its confidence is and how much revenue
    could be converted to the reporting currency, per UTC conversion day, in one long table of sections (filter
    on `section` in the dashboard; sum conversions and revenue over days):

      overall          one row a day: conversions and revenue attributed, unattributed revenue
      strongest_signal one row per day and strongest signal of the picked click ('(none)' without a candidate)
      confidence_bin   ten rows a day, confidence_score in [0, 0.1), ..., [0.9, 1.0] (conversions with a score)
      fx_status        one row per day and fx_status of int_conversions: how many conversions were converted,
                       needed no conversion, had no revenue, or had no usable rate (missing_fx_rate: counted here,
                       their revenue left out of every converted sum)
      calibration_bin  ten rows a day, match_probability of labelled candidate pairs vs the observed match rate

    Only events of var conversion_event_types count. The pick, its confidence and the unattributed revenue are
    the last-touch model's (column model). Calibration labels come from direct clicks: a conversion whose picked
    click shares the 'direct_click' signal (it carried the click id) has a known true click. Each of its scored
    candidate pairs (match_scores) is labelled 1 when the click is that direct click and 0 when the click belongs
    to another identity; clicks of the direct click's own identity (the same person's earlier clicks) are left out
    as ambiguous.

    Every row belongs to one conversion day, so the hourly job rewrites only its window's days (macro
    marts_report_days_config); the labels of older days follow a merge of identities from the next daily job on. -#}
{{ config(**marts_report_days_config()) }}
{%- set signal_label = "coalesce(strongest_signal, '(none)')" -%}
{%- set currency = var('reporting_currency') | string | trim | upper -%}
{%- set measures = [
    ('count(*)', 'conversions'),
    ('sum(case when is_attributed then 1 else 0 end)', 'attributed_conversions'),
    ('sum(revenue)', 'revenue'),
    ('sum(case when is_attributed then revenue else 0 end)', 'attributed_revenue'),
    ('sum(unattributed_revenue)', 'unattributed_revenue'),
    ('avg(confidence_score)', 'avg_confidence'),
] -%}

with

conversions as (

    select * from {{ ref('fct_conversion_attribution') }}
    where is_conversion
        and {{ marts_in_report_window('conversion_date') }}

),

unattributed_credits as (

    select
        conversion_id,
        sum(credit_revenue) as unattributed_revenue
    from {{ ref('fct_attribution_credits') }}
    where model = 'last_touch' and is_unattributed
        and {{ marts_in_report_window('conversion_date') }}
    group by conversion_id

),

scored_conversions as (

    select
        conversions.conversion_id,
        conversions.conversion_date,
        conversions.strongest_signal,
        conversions.confidence_score,
        conversions.is_attributed,
        conversions.fx_status,
        coalesce(conversions.revenue, 0) as revenue,
        coalesce(unattributed_credits.unattributed_revenue, 0) as unattributed_revenue,
        case
            when conversions.confidence_score is null then cast(null as integer)
            else least(cast(floor(conversions.confidence_score * 10) as integer), 9)
        end as confidence_bin
    from conversions
    left join unattributed_credits
        on conversions.conversion_id = unattributed_credits.conversion_id

),

bins as (

    {%- for b in range(10) %}
    select {{ b }} as bin{% if not loop.last %} union all{% endif %}
    {%- endfor %}

),

days as (

    select distinct conversion_date from conversions

),

labelled_conversions as (

    select
        conversion_id,
        conversion_date,
        candidate_click_id as direct_click_id
    from conversions
    where strongest_signal = 'direct_click' and candidate_click_id is not null

),

labelled_scores as (

    select
        labelled_conversions.conversion_date,
        labelled_conversions.direct_click_id,
        cast(scores.click_id as text) as click_id,
        cast(scores.match_probability as double precision) as match_probability
    from {{ source('python', 'match_scores') }} as scores
    inner join labelled_conversions
        on cast(scores.conversion_id as text) = labelled_conversions.conversion_id
    where scores.match_probability is not null

),

{#- Only the clicks the labelled pairs name: the hourly window's pairs look up a few thousand of the 10M clicks
    (by int_event_identities' event_id index on PostgreSQL) instead of joining every click to every score. #}
click_identities as (

    select
        cast(event_id as text) as click_id,
        cast(identity_id as text) as identity_id
    from {{ ref('int_event_identities') }}
    where event_kind = 'click'
        and event_id in (
            select click_id from labelled_scores
            union
            select direct_click_id from labelled_conversions
        )

),

labelled_pairs as (

    select
        labelled_scores.conversion_date,
        labelled_scores.match_probability,
        case when labelled_scores.click_id = labelled_scores.direct_click_id then 1 else 0 end as label,
        least(cast(floor(labelled_scores.match_probability * 10) as integer), 9) as probability_bin
    from labelled_scores
    left join click_identities as pair_click
        on labelled_scores.click_id = pair_click.click_id
    left join click_identities as direct_click
        on labelled_scores.direct_click_id = direct_click.click_id
    where labelled_scores.click_id = labelled_scores.direct_click_id
        or pair_click.identity_id is null
        or direct_click.identity_id is null
        or pair_click.identity_id <> direct_click.identity_id

),

overall as (

    select
        conversion_date,
        'overall' as section,
        'all' as bucket,
        0 as bucket_order,
        cast(null as double precision) as bin_lower,
        cast(null as double precision) as bin_upper,
        {%- for expr, name in measures %}
        {{ expr }} as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from scored_conversions
    group by conversion_date

),

by_signal as (

    select
        conversion_date,
        'strongest_signal' as section,
        {{ signal_label }} as bucket,
        row_number() over (
            partition by conversion_date order by count(*) desc, {{ signal_label }}
        ) as bucket_order,
        cast(null as double precision) as bin_lower,
        cast(null as double precision) as bin_upper,
        {%- for expr, name in measures %}
        {{ expr }} as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from scored_conversions
    group by conversion_date, {{ signal_label }}

),

{#- Statuses in a fixed order, so bucket_order means the same on every day. #}
by_fx_status as (

    select
        conversion_date,
        'fx_status' as section,
        fx_status as bucket,
        case fx_status
            when 'same_currency' then 1 when 'converted' then 2 when 'no_revenue' then 3 else 4
        end as bucket_order,
        cast(null as double precision) as bin_lower,
        cast(null as double precision) as bin_upper,
        {%- for expr, name in measures %}
        {{ expr }} as {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from scored_conversions
    group by conversion_date, fx_status

),

day_bins as (

    select days.conversion_date, bins.bin
    from days
    cross join bins

),

by_confidence as (

    select
        day_bins.conversion_date,
        'confidence_bin' as section,
        day_bins.bin,
        count(scored_conversions.conversion_id) as conversions,
        sum(case when scored_conversions.is_attributed then 1 else 0 end) as attributed_conversions,
        sum(scored_conversions.revenue) as revenue,
        sum(case when scored_conversions.is_attributed then scored_conversions.revenue else 0 end)
            as attributed_revenue,
        sum(scored_conversions.unattributed_revenue) as unattributed_revenue,
        avg(scored_conversions.confidence_score) as avg_confidence
    from day_bins
    left join scored_conversions
        on day_bins.bin = scored_conversions.confidence_bin
        and day_bins.conversion_date = scored_conversions.conversion_date
    group by day_bins.conversion_date, day_bins.bin

),

calibration as (

    select
        day_bins.conversion_date,
        day_bins.bin,
        count(labelled_pairs.label) as labelled_pairs,
        sum(labelled_pairs.label) as positive_pairs,
        avg(labelled_pairs.match_probability) as mean_predicted_probability
    from day_bins
    left join labelled_pairs
        on day_bins.bin = labelled_pairs.probability_bin
        and day_bins.conversion_date = labelled_pairs.conversion_date
    group by day_bins.conversion_date, day_bins.bin

),

conversion_sections as (

    select * from overall
    union all
    select * from by_signal
    union all
    select * from by_fx_status
    union all
    select
        conversion_date,
        section,
        {{ marts_bin_label('bin') }} as bucket,
        bin + 1 as bucket_order,
        cast(bin as double precision) / 10 as bin_lower,
        cast(bin + 1 as double precision) / 10 as bin_upper,
        {%- for expr, name in measures %}
        {{ name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from by_confidence

),

final as (

    select
        cast(conversion_date as date) as report_date,
        cast(section as text) as section,
        cast(bucket as text) as bucket,
        cast(bucket_order as integer) as bucket_order,
        cast('last_touch' as text) as model,
        {{ marts_round('bin_lower', 1) }} as bin_lower,
        {{ marts_round('bin_upper', 1) }} as bin_upper,
        cast(conversions as bigint) as conversions,
        cast(coalesce(attributed_conversions, 0) as bigint) as attributed_conversions,
        {{ marts_ratio('attributed_conversions', 'conversions', 6) }} as share_conversions_attributed,
        cast(coalesce(revenue, 0) as numeric(18, 2)) as revenue,
        cast(coalesce(attributed_revenue, 0) as numeric(18, 2)) as attributed_revenue,
        {{ marts_ratio('attributed_revenue', 'revenue', 6) }} as share_revenue_attributed,
        cast(coalesce(unattributed_revenue, 0) as numeric(18, 2)) as unattributed_revenue,
        cast('{{ currency }}' as text) as currency,
        {{ marts_round('avg_confidence', 6) }} as avg_confidence,
        cast(null as bigint) as labelled_pairs,
        cast(null as bigint) as positive_pairs,
        cast(null as double precision) as mean_predicted_probability,
        cast(null as double precision) as observed_match_rate
    from conversion_sections

    union all

    select
        cast(conversion_date as date) as report_date,
        cast('calibration_bin' as text) as section,
        cast({{ marts_bin_label('bin') }} as text) as bucket,
        cast(bin + 1 as integer) as bucket_order,
        cast('last_touch' as text) as model,
        {{ marts_round('cast(bin as double precision) / 10', 1) }} as bin_lower,
        {{ marts_round('cast(bin + 1 as double precision) / 10', 1) }} as bin_upper,
        cast(null as bigint) as conversions,
        cast(null as bigint) as attributed_conversions,
        cast(null as double precision) as share_conversions_attributed,
        cast(null as numeric(18, 2)) as revenue,
        cast(null as numeric(18, 2)) as attributed_revenue,
        cast(null as double precision) as share_revenue_attributed,
        cast(null as numeric(18, 2)) as unattributed_revenue,
        cast('{{ currency }}' as text) as currency,
        cast(null as double precision) as avg_confidence,
        cast(labelled_pairs as bigint) as labelled_pairs,
        cast(coalesce(positive_pairs, 0) as bigint) as positive_pairs,
        {{ marts_round('mean_predicted_probability', 6) }} as mean_predicted_probability,
        {{ marts_ratio('positive_pairs', 'labelled_pairs', 6) }} as observed_match_rate
    from calibration

)

select * from final
