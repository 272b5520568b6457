{#- Helpers of the marts layer. Every macro returns portable SQL (DuckDB and PostgreSQL); the names carry a marts_
    prefix so they never collide with the staging or intermediate layers' macros. -#}


{#- marts_attribution_models(): the attribution models, in the order reports show them. The wide reports get one
    conversions_<model> / revenue_<model> column pair per entry; keep it in sync with python_models.attribution.MODELS
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
    marts_performance_report(grain): body of rpt_creator_performance (grain creator_id) and
    rpt_campaign_performance (grain campaign_id), which differ only in the grain. One row per grain value that
    owns a link in stg_raw__links. Clicks and credits are assigned through the link's grain value; credits of
    links unknown to `links` belong to no creator or campaign.

    unattributed_revenue: revenue of the conversions with at least one touch on the grain value's links (an
    attributed credit row of the linear model, which credits every selected touch) that stays unattributed
    (their unattributed credit rows, linear model; the unattributed share is the same for every confidence-
    weighted model). A conversion touched by several creators counts for each, so it does not add up across rows.
--------------------------------------------------------------------------------------------------------- -#}
{% macro marts_performance_report(grain) -%}
    {%- if grain not in ('creator_id', 'campaign_id') -%}
        {{ exceptions.raise_compiler_error("marts_performance_report: grain must be creator_id or campaign_id, got '" ~ grain ~ "'") }}
    {%- endif -%}
    {%- set other = 'campaign_id' if grain == 'creator_id' else 'creator_id' -%}
    {%- set other_count = 'n_campaigns' if grain == 'creator_id' else 'n_creators' -%}
    {%- set models = marts_attribution_models() -%}

with

links as (

    select
        cast(link_id as text) as link_id,
        cast({{ grain }} as text) as {{ grain }},
        cast({{ other }} as text) as {{ other }}
    from {{ ref('stg_raw__links') }}
    where {{ grain }} is not null

),

clicks as (

    select
        cast(link_id as text) as link_id,
        coalesce(is_bot, false) as is_bot
    from {{ ref('int_clicks') }}

),

credits as (

    select * from {{ ref('fct_attribution_credits') }}

),

link_counts as (

    select
        {{ grain }},
        count(distinct link_id) as n_links,
        count(distinct {{ other }}) as {{ other_count }}
    from links
    group by {{ grain }}

),

click_counts as (

    select
        links.{{ grain }},
        sum(case when clicks.is_bot then 0 else 1 end) as human_clicks,
        sum(case when clicks.is_bot then 1 else 0 end) as bot_clicks
    from clicks
    inner join links
        on clicks.link_id = links.link_id
    group by links.{{ grain }}

),

credit_totals as (

    select
        {{ grain }},
        {%- for model in models %}
        sum(case when model = '{{ model }}' then credit_share else 0 end) as conversions_{{ model }},
        sum(case when model = '{{ model }}' then credit_revenue else 0 end) as revenue_{{ model }},
        {%- endfor %}
        avg(case when model = 'last_touch' then match_probability end) as avg_confidence
    from credits
    where not is_unattributed and {{ grain }} is not null
    group by {{ grain }}

),

touched_conversions as (

    select distinct {{ grain }}, conversion_id
    from credits
    where model = 'linear' and not is_unattributed and {{ grain }} is not null

),

unattributed_credits as (

    select conversion_id, credit_revenue
    from credits
    where model = 'linear' and is_unattributed

),

unattributed_totals as (

    select
        touched_conversions.{{ grain }},
        count(*) as touched_conversions,
        sum(coalesce(unattributed_credits.credit_revenue, 0)) as unattributed_revenue
    from touched_conversions
    left join unattributed_credits
        on touched_conversions.conversion_id = unattributed_credits.conversion_id
    group by touched_conversions.{{ grain }}

),

final as (

    select
        cast(link_counts.{{ grain }} as text) as {{ grain }},
        cast(link_counts.n_links as bigint) as n_links,
        cast(link_counts.{{ other_count }} as bigint) as {{ other_count }},
        cast(coalesce(click_counts.human_clicks, 0) as bigint) as human_clicks,
        cast(coalesce(click_counts.bot_clicks, 0) as bigint) as bot_clicks,
        cast(coalesce(unattributed_totals.touched_conversions, 0) as bigint) as touched_conversions,
        {%- for model in models %}
        cast(coalesce(credit_totals.conversions_{{ model }}, 0) as numeric(18, 6)) as conversions_{{ model }},
        cast(coalesce(credit_totals.revenue_{{ model }}, 0) as numeric(18, 2)) as revenue_{{ model }},
        {%- endfor %}
        {{ marts_round('credit_totals.avg_confidence', 6) }} as avg_confidence,
        cast(coalesce(unattributed_totals.unattributed_revenue, 0) as numeric(18, 2)) as unattributed_revenue
    from link_counts
    left join click_counts
        on link_counts.{{ grain }} = click_counts.{{ grain }}
    left join credit_totals
        on link_counts.{{ grain }} = credit_totals.{{ grain }}
    left join unattributed_totals
        on link_counts.{{ grain }} = unattributed_totals.{{ grain }}

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
