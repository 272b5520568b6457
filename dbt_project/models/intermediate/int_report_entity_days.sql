{#- The numbers every daily report shares, long by entity: one row per entity type (link_id, creator_id,
    campaign_id, channel), entity value, UTC day and attribution model where the entity had clicks, credits or
    spend that day. Each rpt_* mart selects its entity type from here, so the report rules are written once.

    Spend (int_spend, in the reporting currency) given for a link counts for the link and rolls up to its creator,
    campaign and channel; spend given for a creator, campaign or channel counts for that entity only (a creator's
    fee is no channel's cost). Spend without a usable exchange rate is left out (int_spend counts it).

    It reads the credits fact (a mart) because the credited money is defined there, once, to the cent; so it runs
    after attribution (tag after_attribution, a dbt stage of its own between the facts and the reports).

    Incremental by report_date (macro marts_report_days_config): the hourly job rebuilds its run's days, the daily
    job and full runs every day, so days before the window take the daily re-fit's identities there. -#}
{{
    config(
        tags=['after_attribution'],
        **marts_report_days_config()
    )
}}

{%- set currency = var('reporting_currency') | string | trim | upper %}

with

clicks as (

    select
        cast(click_id as text) as click_id,
        cast(clicked_date as date) as report_date,
        cast(link_id as text) as link_id,
        cast(creator_id as text) as creator_id,
        cast(campaign_id as text) as campaign_id,
        cast(channel as text) as channel,
        coalesce(is_bot, false) as is_bot
    from {{ ref('int_clicks') }}
    where {{ marts_in_report_window('cast(clicked_date as date)') }}

),

credits as (

    select * from {{ ref('fct_attribution_credits') }}
    where {{ marts_in_report_window('conversion_date') }}

),

links as (

    select
        cast(link_id as text) as link_id,
        cast(creator_id as text) as creator_id,
        cast(campaign_id as text) as campaign_id,
        cast(channel as text) as channel
    from {{ ref('stg_raw__links') }}

),

{#- Spend on a link also belongs to the link's creator, campaign and channel; spend given for one of those belongs
    to it alone. A link unknown to `links` has channel '(unknown)', as its credits do. #}
spend as (

    select
        cast(int_spend.spend_date as date) as report_date,
        int_spend.reporting_amount,
        cast(int_spend.link_id as text) as link_id,
        case
            when int_spend.entity_type = 'link_id' then links.creator_id
            else cast(int_spend.creator_id as text)
        end as creator_id,
        case
            when int_spend.entity_type = 'link_id' then links.campaign_id
            else cast(int_spend.campaign_id as text)
        end as campaign_id,
        case
            when int_spend.entity_type = 'link_id' then coalesce(links.channel, '(unknown)')
            else cast(int_spend.channel as text)
        end as channel
    from {{ ref('int_spend') }} as int_spend
    left join links
        on cast(int_spend.link_id as text) = links.link_id
    where int_spend.reporting_amount is not null
        and {{ marts_in_report_window('cast(int_spend.spend_date as date)') }}

),

click_identities as (

    select
        cast(event_id as text) as click_id,
        cast(identity_id as text) as identity_id
    from {{ ref('int_event_identities') }}
    where event_kind = 'click'

),

entity_types as (

    select cast('link_id' as text) as entity_type
    union all
    select cast('creator_id' as text) as entity_type
    union all
    select cast('campaign_id' as text) as entity_type
    union all
    select cast('channel' as text) as entity_type

),

attribution_models as (

    {%- for model in marts_attribution_models() %}
    select cast('{{ model }}' as text) as model{% if not loop.last %} union all{% endif %}
    {%- endfor %}

),

{#- Each click's identity, joined once per click rather than once per entity type. #}
identified_clicks as (

    select
        clicks.*,
        click_identities.identity_id
    from clicks
    left join click_identities
        on clicks.click_id = click_identities.click_id

),

{#- Every click once per entity type it belongs to. #}
entity_clicks as not materialized (

    select
        entity_types.entity_type,
        case entity_types.entity_type
            when 'link_id' then clicks.link_id
            when 'creator_id' then clicks.creator_id
            when 'campaign_id' then clicks.campaign_id
            else clicks.channel
        end as entity_value,
        clicks.report_date,
        clicks.is_bot,
        clicks.identity_id
    from identified_clicks as clicks
    cross join entity_types

),

{#- Every credit row once per entity type. The unattributed rows count only in the channel report, as channel
    '(unattributed)', so that one model's channel rows add up to every conversion and all revenue; credits of links
    unknown to `links` are channel '(unknown)' there and belong to no creator or campaign. #}
entity_credits as (

    select
        entity_types.entity_type,
        case entity_types.entity_type
            when 'link_id' then credits.link_id
            when 'creator_id' then credits.creator_id
            when 'campaign_id' then credits.campaign_id
            else
                case
                    when credits.is_unattributed then '(unattributed)'
                    else coalesce(credits.channel, '(unknown)')
                end
        end as entity_value,
        credits.conversion_date as report_date,
        credits.conversion_id,
        credits.model,
        credits.is_unattributed,
        credits.credit_share,
        credits.credit_revenue,
        credits.match_probability
    from credits
    cross join entity_types
    where entity_types.entity_type = 'channel' or not credits.is_unattributed

),

entity_spend as (

    select
        entity_types.entity_type,
        case entity_types.entity_type
            when 'link_id' then spend.link_id
            when 'creator_id' then spend.creator_id
            when 'campaign_id' then spend.campaign_id
            else spend.channel
        end as entity_value,
        spend.report_date,
        spend.reporting_amount
    from spend
    cross join entity_types

),

{#- Distinct people in two steps (the distinct rows, then their count) rather than count(distinct ...): DuckDB
    holds a distinct aggregate's values per group in memory, and at 10M clicks that ran out of its 2 GB. #}
identity_days as (

    select
        entity_type,
        entity_value,
        report_date,
        count(*) as unique_identities
    from (
        select distinct entity_type, entity_value, report_date, identity_id
        from entity_clicks
        where not is_bot and identity_id is not null and entity_value is not null
    ) as distinct_identities
    group by entity_type, entity_value, report_date

),

click_counts as (

    select
        entity_type,
        entity_value,
        report_date,
        sum(case when is_bot then 0 else 1 end) as human_clicks,
        sum(case when is_bot then 1 else 0 end) as bot_clicks
    from entity_clicks
    where entity_value is not null
    group by entity_type, entity_value, report_date

),

click_days as (

    select
        click_counts.*,
        coalesce(identity_days.unique_identities, 0) as unique_identities
    from click_counts
    left join identity_days
        on click_counts.entity_type = identity_days.entity_type
        and click_counts.entity_value = identity_days.entity_value
        and click_counts.report_date = identity_days.report_date

),

credit_days as (

    select
        entity_type,
        entity_value,
        report_date,
        model,
        sum(credit_share) as conversions,
        sum(credit_revenue) as revenue,
        avg(match_probability) as avg_confidence
    from entity_credits
    where entity_value is not null
    group by entity_type, entity_value, report_date, model

),

{#- Per entity, day and model: the conversions the entity touched, and what of them stays unattributed. #}
touched as (

    select distinct entity_type, entity_value, report_date, model, conversion_id
    from entity_credits
    where not is_unattributed and entity_value is not null

),

unattributed_credits as (

    select
        conversion_id,
        model,
        sum(credit_revenue) as revenue
    from credits
    where is_unattributed
    group by conversion_id, model

),

unattributed_days as (

    select
        touched.entity_type,
        touched.entity_value,
        touched.report_date,
        touched.model,
        count(*) as touched_conversions,
        sum(coalesce(unattributed_credits.revenue, 0)) as unattributed_revenue
    from touched
    left join unattributed_credits
        on touched.conversion_id = unattributed_credits.conversion_id
        and touched.model = unattributed_credits.model
    group by touched.entity_type, touched.entity_value, touched.report_date, touched.model

),

spend_days as (

    select
        entity_type,
        entity_value,
        report_date,
        sum(reporting_amount) as spend
    from entity_spend
    where entity_value is not null
    group by entity_type, entity_value, report_date

),

entity_days as (

    select entity_type, entity_value, report_date from click_days
    union
    select entity_type, entity_value, report_date from credit_days
    union
    select entity_type, entity_value, report_date from spend_days

),

{#- Every model gets a row for each entity and day, so click counts repeat on each model's row. #}
grid as (

    select entity_days.entity_type, entity_days.entity_value, entity_days.report_date, attribution_models.model
    from entity_days
    cross join attribution_models

),

final as (

    select
        cast(grid.entity_type as text) as entity_type,
        cast(grid.entity_value as text) as entity_value,
        cast(grid.report_date as date) as report_date,
        cast(grid.model as text) as model,
        cast(coalesce(click_days.human_clicks, 0) as bigint) as human_clicks,
        cast(coalesce(click_days.bot_clicks, 0) as bigint) as bot_clicks,
        cast(coalesce(click_days.unique_identities, 0) as bigint) as unique_identities,
        cast(coalesce(credit_days.conversions, 0) as numeric(18, 6)) as conversions,
        cast(coalesce(credit_days.revenue, 0) as numeric(18, 2)) as revenue,
        cast(coalesce(unattributed_days.touched_conversions, 0) as bigint) as touched_conversions,
        cast(coalesce(unattributed_days.unattributed_revenue, 0) as numeric(18, 2)) as unattributed_revenue,
        cast(spend_days.spend as numeric(18, 2)) as spend,
        {{ marts_ratio('spend_days.spend', 'credit_days.conversions', 6) }} as cost_per_conversion,
        {{ marts_ratio('coalesce(credit_days.revenue, 0)', 'spend_days.spend', 6) }} as return_on_spend,
        cast('{{ currency }}' as text) as currency,
        {{ marts_round('credit_days.avg_confidence', 6) }} as avg_confidence
    from grid
    left join click_days
        on grid.entity_type = click_days.entity_type
        and grid.entity_value = click_days.entity_value
        and grid.report_date = click_days.report_date
    left join credit_days
        on grid.entity_type = credit_days.entity_type
        and grid.entity_value = credit_days.entity_value
        and grid.report_date = credit_days.report_date
        and grid.model = credit_days.model
    left join unattributed_days
        on grid.entity_type = unattributed_days.entity_type
        and grid.entity_value = unattributed_days.entity_value
        and grid.report_date = unattributed_days.report_date
        and grid.model = unattributed_days.model
    left join spend_days
        on grid.entity_type = spend_days.entity_type
        and grid.entity_value = spend_days.entity_value
        and grid.report_date = spend_days.report_date

)

select * from final
