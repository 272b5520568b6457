{#- Helpers of the marts layer. Every macro returns portable SQL (DuckDB and PostgreSQL); the names carry a marts_
    prefix so they never collide with the staging or intermediate layers' macros. -#}


{#- marts_attribution_models(): the attribution models, in the order reports show them. Every report has one row
    per entry for each entity and day (marts_daily_report); keep it in sync with python_models.attribution.MODELS
    and with the accepted_values tests in _marts__models.yml. -#}
{% macro marts_attribution_models() -%}
    {{- return(['first_touch', 'last_touch', 'linear', 'time_decay', 'position_based', 'markov', 'shapley',
                'rule_based']) -}}
{%- endmacro %}


{#- marts_partition_date(name): the partition var ('partition_start' / 'partition_end') as a 'YYYY-MM-DD' text,
    or none when unset (null, '' or 'none'): no bound, process everything. Dagster passes the bounds of a daily
    UTC partition as ISO timestamps ('2026-01-05T00:00:00+00:00'); facts are keyed by UTC conversion date, so the
    date part is the bound. -#}
{% macro marts_partition_date(name) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none or (value | string | trim | lower) in ('', 'none', 'null') -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set text = value | string | trim -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ].*)?$', text) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be an ISO 8601 date or timestamp, got '" ~ text ~ "'") }}
    {%- endif -%}
    {{- return(text[:10]) -}}
{%- endmacro %}


{#- marts_partition_filter(date_expr): predicate keeping the rows whose date falls in [partition_start,
    partition_end); `1 = 1` when no bound is set. -#}
{% macro marts_partition_filter(date_expr) -%}
    {%- set p_start = marts_partition_date('partition_start') -%}
    {%- set p_end = marts_partition_date('partition_end') -%}
    1 = 1
    {%- if p_start %} and {{ date_expr }} >= cast('{{ p_start }}' as date){% endif %}
    {%- if p_end %} and {{ date_expr }} < cast('{{ p_end }}' as date){% endif %}
{%- endmacro %}


{#- marts_delete_partition_window(column): pre-hook of the partitioned facts. On an incremental run it deletes
    the window's rows (every row when no bound is set), so a rerun replaces the window exactly, including
    conversions that no longer exist upstream. delete+insert on conversion_id then also removes conversions whose
    date moved into the window from another day. Nothing on the first run or a --full-refresh. -#}
{% macro marts_delete_partition_window(column) -%}
    {%- if incremental_deletes_rows() -%}
        delete from {{ this }} where {{ marts_partition_filter(column) }}
    {%- endif -%}
{%- endmacro %}


{#- marts_round(expr, digits): expr rounded to `digits` decimals, as double precision. Averages and ratios of
    floating-point values are rounded so that rebuilding a report from the same data gives identical values
    whatever order the engine summed in. -#}
{% macro marts_round(expr, digits=9) -%}
    cast(round(cast({{ expr }} as numeric(38, 15)), {{ digits }}) as double precision)
{%- endmacro %}


{#- marts_ratio(numerator, denominator, digits): numerator / denominator as a rounded double, null when the
    denominator is 0 or null. -#}
{% macro marts_ratio(numerator, denominator, digits=9) -%}
    case
        when coalesce({{ denominator }}, 0) = 0 then cast(null as double precision)
        else {{ marts_round('cast(' ~ numerator ~ ' as double precision) / cast(' ~ denominator ~ ' as double precision)', digits) }}
    end
{%- endmacro %}


{#- marts_bi_reader_role(): the read-only BI role (var bi_reader_role, env ATTRIBUTION_BI_ROLE, default bi_reader),
    lower-cased (PostgreSQL folds unquoted names) and validated as a plain identifier because it is
    interpolated into DDL. -#}
{% macro marts_bi_reader_role() -%}
    {%- set role = var('bi_reader_role', 'bi_reader') | string | trim | lower -%}
    {%- if not modules.re.match('^[a-z_][a-z0-9_]*$', role) -%}
        {{ exceptions.raise_compiler_error("var bi_reader_role must be a plain SQL identifier, got '" ~ role ~ "'") }}
    {%- endif -%}
    {{- return(role) -}}
{%- endmacro %}


{#- marts_setup_bi_reader(): on-run-start hook. On PostgreSQL it creates the BI role when missing (NOLOGIN: people
    and tools log in as their own users and are granted the role) and lets it use schema marts. Table-level
    `select` comes from the marts folder's `grants` config, so the role can read marts tables and nothing else.
    Roles are cluster-wide, so concurrent runs in other databases may race to create it: that error is ignored.
    A dbt user without CREATEROLE gets an error saying how to create the role once. A no-op on DuckDB. -#}
{% macro marts_setup_bi_reader() -%}
    {%- if target.type == 'postgres' -%}
        {%- set role = marts_bi_reader_role() -%}
        do $marts_bi$
        begin
            if not exists (select 1 from pg_catalog.pg_roles where rolname = '{{ role }}') then
                create role {{ role }} nologin;
            end if;
        exception
            when duplicate_object or unique_violation then
                null;
            when insufficient_privilege then
                raise exception 'role {{ role }} (var bi_reader_role) does not exist and % may not create it; an administrator creates it once: create role {{ role }} nologin', current_user;
        end
        $marts_bi$;
        create schema if not exists marts;
        grant usage on schema marts to {{ role }};
    {%- endif -%}
{%- endmacro %}


{#- ---------------------------------------------------------------------------------------------------------
    marts_daily_report(entity): body of rpt_link_daily (link_id), rpt_creator_performance (creator_id),
    rpt_campaign_performance (campaign_id) and rpt_channel_attribution (channel): one report shape.

    One row per UTC day, entity value and attribution model where the entity had clicks or credits that day;
    every model of marts_attribution_models() gets a row, so the click counts (click date) repeat on each model's
    row and the credits (conversion date) are the model's own. Totals over any dates are a plain sum with a
    `where model = ...`. Money is in the reporting currency (column currency, var reporting_currency); credits
    come from fct_attribution_credits, so only conversions of var conversion_event_types count, and a conversion
    without a usable exchange rate adds its conversion but none of its revenue.

    unattributed_revenue: revenue of the conversions with at least one credited touch on the entity that day and
    model (touched_conversions) that stays unattributed under the model. A conversion touched by several entity
    values counts for each, so it does not add up across rows. The channel report instead carries the
    unattributed credit rows themselves as channel '(unattributed)' (is_unattributed), so its rows of one model add
    up to every conversion and all revenue; credits of links unknown to `links` are channel '(unknown)' there.
--------------------------------------------------------------------------------------------------------- -#}
{% macro marts_daily_report(entity) -%}
    {%- if entity not in ('link_id', 'creator_id', 'campaign_id', 'channel') -%}
        {{ exceptions.raise_compiler_error("marts_daily_report: entity must be link_id, creator_id, campaign_id or channel, got '" ~ entity ~ "'") }}
    {%- endif -%}
    {%- set models = marts_attribution_models() -%}
    {%- set is_channel = entity == 'channel' -%}
    {%- set currency = var('reporting_currency') | string | trim | upper -%}
    {%- if is_channel -%}
        {%- set credit_entity = "case when is_unattributed then '(unattributed)' else coalesce(channel, '(unknown)') end" -%}
    {%- else -%}
        {%- set credit_entity = entity -%}
    {%- endif -%}

with

clicks as (

    select
        cast(click_id as text) as click_id,
        cast(clicked_date as date) as report_date,
        cast({{ entity }} as text) as entity,
        coalesce(is_bot, false) as is_bot
    from {{ ref('int_clicks') }}
    where {{ entity }} is not null

),

credits as (

    select
        conversion_date as report_date,
        cast({{ credit_entity }} as text) as entity,
        conversion_id,
        model,
        is_unattributed,
        credit_share,
        credit_revenue,
        match_probability
    from {{ ref('fct_attribution_credits') }}
    {%- if not is_channel %}
    where not is_unattributed and {{ entity }} is not null
    {%- endif %}

),

attribution_models as (

    {%- for model in models %}
    select cast('{{ model }}' as text) as model{% if not loop.last %} union all{% endif %}
    {%- endfor %}

),
{%- if entity == 'link_id' %}

click_identities as (

    select
        cast(event_id as text) as click_id,
        cast(identity_id as text) as identity_id
    from {{ ref('int_event_identities') }}
    where event_kind = 'click'

),

links as (

    select
        cast(link_id as text) as link_id,
        cast(creator_id as text) as creator_id,
        cast(campaign_id as text) as campaign_id,
        cast(channel as text) as channel
    from {{ ref('stg_raw__links') }}

),
{%- endif %}

click_days as (

    select
        clicks.report_date,
        clicks.entity,
        sum(case when clicks.is_bot then 0 else 1 end) as human_clicks,
        sum(case when clicks.is_bot then 1 else 0 end) as bot_clicks
        {%- if entity == 'link_id' %},
        count(distinct case when not clicks.is_bot then click_identities.identity_id end) as unique_identities
        {%- endif %}
    from clicks
    {%- if entity == 'link_id' %}
    left join click_identities
        on clicks.click_id = click_identities.click_id
    {%- endif %}
    group by clicks.report_date, clicks.entity

),

credit_days as (

    select
        report_date,
        entity,
        model,
        sum(credit_share) as conversions,
        sum(credit_revenue) as revenue,
        avg(match_probability) as avg_confidence
    from credits
    group by report_date, entity, model

),

{#- Per day, entity and model: the conversions touched by the entity and what of them stays unattributed. #}
touched as (

    select distinct report_date, entity, model, conversion_id
    from credits
    where not is_unattributed

),

unattributed_credits as (

    select
        conversion_id,
        model,
        sum(credit_revenue) as revenue
    from {{ ref('fct_attribution_credits') }}
    where is_unattributed
    group by conversion_id, model

),

unattributed_days as (

    select
        touched.report_date,
        touched.entity,
        touched.model,
        count(*) as touched_conversions,
        sum(coalesce(unattributed_credits.revenue, 0)) as unattributed_revenue
    from touched
    left join unattributed_credits
        on touched.conversion_id = unattributed_credits.conversion_id
        and touched.model = unattributed_credits.model
    group by touched.report_date, touched.entity, touched.model

),

entity_days as (

    select report_date, entity from click_days
    union
    select report_date, entity from credit_days

),

grid as (

    select entity_days.report_date, entity_days.entity, attribution_models.model
    from entity_days
    cross join attribution_models

),

final as (

    select
        cast(grid.report_date as date) as report_date,
        cast(grid.entity as text) as {{ entity }},
        {%- if entity == 'link_id' %}
        links.creator_id,
        links.campaign_id,
        links.channel,
        {%- endif %}
        {%- if is_channel %}
        cast(grid.entity = '(unattributed)' as boolean) as is_unattributed,
        {%- endif %}
        cast(grid.model as text) as model,
        cast(coalesce(click_days.human_clicks, 0) as bigint) as human_clicks,
        cast(coalesce(click_days.bot_clicks, 0) as bigint) as bot_clicks,
        {%- if entity == 'link_id' %}
        cast(coalesce(click_days.unique_identities, 0) as bigint) as unique_identities,
        {%- endif %}
        cast(coalesce(credit_days.conversions, 0) as numeric(18, 6)) as conversions,
        cast(coalesce(credit_days.revenue, 0) as numeric(18, 2)) as revenue,
        cast(coalesce(unattributed_days.touched_conversions, 0) as bigint) as touched_conversions,
        cast(coalesce(unattributed_days.unattributed_revenue, 0) as numeric(18, 2)) as unattributed_revenue,
        cast('{{ currency }}' as text) as currency,
        {{ marts_round('credit_days.avg_confidence', 6) }} as avg_confidence
    from grid
    left join click_days
        on grid.report_date = click_days.report_date and grid.entity = click_days.entity
    left join credit_days
        on grid.report_date = credit_days.report_date
        and grid.entity = credit_days.entity
        and grid.model = credit_days.model
    left join unattributed_days
        on grid.report_date = unattributed_days.report_date
        and grid.entity = unattributed_days.entity
        and grid.model = unattributed_days.model
    {%- if entity == 'link_id' %}
    left join links
        on grid.entity = links.link_id
    {%- endif %}

)

select * from final
{%- endmacro %}


{#- marts_bin_label(bin): label of a tenth-wide bin 0..9 of a probability, '[0.0, 0.1)' ... '[0.9, 1.0]'. -#}
{% macro marts_bin_label(bin) -%}
    case
        when {{ bin }} = 9 then '[0.9, 1.0]'
        else '[0.' || cast({{ bin }} as {{ dbt.type_string() }}) || ', 0.' || cast({{ bin }} + 1 as {{ dbt.type_string() }}) || ')'
    end
{%- endmacro %}
