{#- Helpers of the marts layer. Every macro returns portable SQL (DuckDB and PostgreSQL); the names carry a marts_
    prefix so they never collide with the staging or intermediate layers' macros. -#}


{#- marts_attribution_models(): the attribution models, in the order reports show them. Every report has one row
    per entry for each entity and day (int_report_entity_days); keep it in sync with python_models.attribution.MODELS
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


{#- marts_by_day_config(day_column, unique_key, partition_by): the config of a table updated in place by day. With
    partition_start / partition_end set, an incremental build deletes and rewrites only those days of day_column
    (pre-hook marts_delete_partition_window; delete+insert on unique_key also removes a key's rows from other days);
    without them every day. meta published_by_day names the column, so that publishing the marts (publish.sql)
    carries over the snapshot's other days instead of copying the table whole. On PostgreSQL the day and the key
    are indexed, here and in the published copy, for BI's filters by day and the deletes by day and key (at L a
    cold two-day delete and insert took the same time with or without them, BENCHMARKS.md). -#}
{% macro marts_by_day_config(day_column, unique_key, partition_by=none) -%}
    {%- set indexes = [{'columns': [day_column]}] + ([{'columns': [unique_key]}] if unique_key != day_column else []) -%}
    {{- return(dict(pre_hook="{{ marts_delete_partition_window('" ~ day_column ~ "') }}",
                    meta={'published_by_day': day_column},
                    **incremental_config(unique_key, 'fail', partition_by=partition_by, indexes=indexes))) -}}
{%- endmacro %}


{#- marts_report_days_config(): the config of the tables by report_date (int_report_entity_days, the rpt_*
    reports built from it, and rpt_attribution_quality). Updating in place with partition_start / partition_end
    set (the hourly job passes its run's window, which holds every day its loads can change) rebuilds only those
    days; without them (the daily job, full runs) every day. A first build, and every build on Spark (a table
    there), holds every day. -#}
{% macro marts_report_days_config() -%}
    {{- return(marts_by_day_config('report_date', 'report_date')) -}}
{%- endmacro %}


{#- marts_in_report_window(date_expr): the days a build of a report_days table writes (marts_report_days_config):
    the run's window when it updates in place, every day otherwise. -#}
{% macro marts_in_report_window(date_expr) -%}
    {%- if is_incremental() -%}
        {{ marts_partition_filter(date_expr) }}
    {%- else -%}
        1 = 1
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


{#- marts_bin_label(bin): label of a tenth-wide bin 0..9 of a probability, '[0.0, 0.1)' ... '[0.9, 1.0]'. -#}
{% macro marts_bin_label(bin) -%}
    case
        when {{ bin }} = 9 then '[0.9, 1.0]'
        else '[0.' || cast({{ bin }} as {{ dbt.type_string() }}) || ', 0.' || cast({{ bin }} + 1 as {{ dbt.type_string() }}) || ')'
    end
{%- endmacro %}


{#- get_where_subquery(relation): dbt's own (a data test's `where` config as a filtered subquery of the tested
    relation), overridden for one token: `__report_window(<date column>)__` becomes the days a build of a
    report_days table writes (marts_partition_filter: the hourly run's window when dbt gets partition_start /
    partition_end, every day otherwise). A report's uniqueness test then guards the days the hourly run rewrote
    (a blocking check on the new partition) and every day in the daily job and full runs (history): it read the
    whole table every hour, 17 s per report at 10M clicks on PostgreSQL. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if not where -%}
        {{- return(relation) -}}
    {%- endif -%}
    {%- set token = modules.re.search('__report_window\\((\\w+)\\)__', where) -%}
    {%- if token -%}
        {%- set where = where | replace(token.group(0), '(' ~ marts_partition_filter(token.group(1)) ~ ')') -%}
    {%- endif -%}
    {{- return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -}}
{%- endmacro %}
