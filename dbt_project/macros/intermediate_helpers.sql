{#- Helpers of the intermediate layer. Every macro returns portable SQL (DuckDB and PostgreSQL); the names carry
    an int_ prefix so they never collide with the staging layer's macros. -#}


{#- ---------------------------------------------------------------------------------------------------------
    int_setting(name): a tuning var of the intermediate layer with its documented default, so the models work
    whether or not dbt_project.yml declares the var. Override with --vars '{candidate_max_ip_popularity: 100}'.
--------------------------------------------------------------------------------------------------------- -#}
{% macro int_setting(name) -%}
    {%- set defaults = {
        'lookback_days': 30,
        'candidate_max_ip_popularity': 50,
        'candidate_max_ip_ua_popularity': 20,
        'candidate_max_fingerprint_popularity': 20,
        'candidate_clock_skew_seconds': 0,
        'candidate_recent_clicks_per_value': 5,
    } -%}
    {%- if name not in defaults -%}
        {{ exceptions.raise_compiler_error("int_setting: unknown setting '" ~ name ~ "'") }}
    {%- endif -%}
    {%- set value = var(name, defaults[name]) -%}
    {%- if value is none or (value | string | trim) == '' -%}
        {%- set value = defaults[name] -%}
    {%- endif -%}
    {{- return(value | int) -}}
{%- endmacro %}


{#- int_partition_bound(name): the partition var ('partition_start' / 'partition_end') as an ISO text, or none
    when unset (null, '' or 'none'): no bound, process everything. -#}
{% macro int_partition_bound(name) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none or (value | string | trim | lower) in ('', 'none', 'null') -%}
        {{- return(none) -}}
    {%- endif -%}
    {{- return(value | string | trim) -}}
{%- endmacro %}


{#- int_short_window(): whether the run's partition window [partition_start, partition_end) is a week or less (the
    hourly and daily jobs); false without both bounds (full runs) and for longer backfills. Models plan such runs
    differently (macros single_threaded_session, postgres_short_window_materialized). -#}
{% macro int_short_window() -%}
    {%- set p_start = int_partition_bound('partition_start') -%}
    {%- set p_end = int_partition_bound('partition_end') -%}
    {%- if not (p_start and p_end) -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set day = modules.datetime.date -%}
    {{- return((day.fromisoformat(p_end[:10]) - day.fromisoformat(p_start[:10])).days <= 7) -}}
{%- endmacro %}


{#- int_timestamptz_literal(text): an ISO 8601 text as a timestamp with time zone literal. -#}
{% macro int_timestamptz_literal(value) -%}
    cast('{{ value | replace("'", "''") }}' as timestamp with time zone)
{%- endmacro %}


{#- int_seconds_before(ts, seconds) / int_seconds_after(ts, seconds): ts shifted by a whole number of seconds.
    dbt.dateadd is portable but does not parenthesise its result on every adapter; these do. -#}
{% macro int_seconds_before(ts, seconds) -%}
    ({{ dbt.dateadd('second', -1 * (seconds | int), ts) }})
{%- endmacro %}

{% macro int_seconds_after(ts, seconds) -%}
    ({{ dbt.dateadd('second', seconds | int, ts) }})
{%- endmacro %}


{#- int_within_lookback(click_ts, conversion_ts): the matching window of a candidate pair, from lookback_days
    before the conversion up to the conversion (plus candidate_clock_skew_seconds of tolerance). Written as plain
    comparisons so the engines keep it as a filter of the equi-join, never as the join itself. -#}
{% macro int_within_lookback(click_ts, conversion_ts) -%}
    {{ click_ts }} >= {{ int_seconds_before(conversion_ts, int_setting('lookback_days') * 86400) }}
    and {{ click_ts }} <= {{ int_seconds_after(conversion_ts, int_setting('candidate_clock_skew_seconds')) }}
{%- endmacro %}


{#- int_seconds_between(earlier, later): later - earlier in (fractional) seconds, as double precision (staging's
    epoch_seconds does the engine-specific part). -#}
{% macro int_seconds_between(earlier, later) -%}
    (cast({{ link_attribution.epoch_seconds(later) }} as double precision)
        - cast({{ link_attribution.epoch_seconds(earlier) }} as double precision))
{%- endmacro %}


{#- int_true(expr): a boolean that is never null (a comparison with a null side counts as false). -#}
{% macro int_true(expr) -%}
    coalesce({{ expr }}, false)
{%- endmacro %}


{#- ---------------------------------------------------------------------------------------------------------
    int_delete_partition_window(column): pre-hook of a partitioned incremental model. On an incremental run it
    deletes the rows whose `column` falls in [partition_start, partition_end) (every row when no bound is set),
    so a rerun replaces the window exactly, including keys that no longer produce any row. Nothing on the first
    run or a --full-refresh (the table is rebuilt anyway).
--------------------------------------------------------------------------------------------------------- -#}
{% macro int_delete_partition_window(column) -%}
    {%- if incremental_deletes_rows() -%}
        {%- set p_start = int_partition_bound('partition_start') -%}
        {%- set p_end = int_partition_bound('partition_end') -%}
        delete from {{ this }}
        where 1 = 1
        {%- if p_start %} and {{ column }} >= {{ int_timestamptz_literal(p_start) }}{% endif %}
        {%- if p_end %} and {{ column }} < {{ int_timestamptz_literal(p_end) }}{% endif %}
    {%- endif -%}
{%- endmacro %}


{#- int_relation_exists(relation): true when the relation exists in the warehouse. Used for tables written by
    Python assets, which are absent before their first materialisation. A macro of its own so unit tests can
    override it. -#}
{% macro int_relation_exists(relation) -%}
    {%- if not execute -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set found = adapter.get_relation(
        database=relation.database, schema=relation.schema, identifier=relation.identifier) -%}
    {{- return(found is not none) -}}
{%- endmacro %}


{#- int_relation_has_rows(relation): true when the relation exists and, where a run can read it (reads_built_table),
    holds a row. For the hourly merge's tables, which every re-fit empties: a model reading them right after a re-fit
    (the daily job, a full run) leaves their join or union out instead of joining empty tables. -#}
{% macro int_relation_has_rows(relation) -%}
    {%- if not int_relation_exists(relation) -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- if not reads_built_table(relation) -%}
        {{- return(true) -}}
    {%- endif -%}
    {{- return(run_query('select 1 from ' ~ relation ~ ' limit 1').rows | length > 0) -}}
{%- endmacro %}


{#- int_bytewise_less(a, b): a < b comparing text byte by byte, so canonical orders are the same on every engine.
    DuckDB compares text by bytes already; PostgreSQL follows the database's collation unless told otherwise. The
    collation only applies to the comparison: values selected through a case expression keep their own. -#}
{% macro int_bytewise_less(a, b) %}
    {{- return(adapter.dispatch('int_bytewise_less', 'link_attribution')(a, b)) -}}
{% endmacro %}

{% macro default__int_bytewise_less(a, b) -%}
    ({{ a }}) < ({{ b }})
{%- endmacro %}

{% macro postgres__int_bytewise_less(a, b) -%}
    ({{ a }}) collate "C" < ({{ b }}) collate "C"
{%- endmacro %}


{#- int_ordered_pairs(items): every pair (items[i], items[j]) with i < j, in order. -#}
{% macro int_ordered_pairs(items) -%}
    {%- set pairs = [] -%}
    {%- for left in items -%}
        {%- for right in items[loop.index:] -%}
            {%- do pairs.append((left, right)) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{- return(pairs) -}}
{%- endmacro %}


{#- fx_converted(amount, fx_rate): an amount in the reporting currency, rounded to the cent, from its original amount
    and the factor of int_fx_day_rates. Revenue and spend convert alike. -#}
{% macro fx_converted(amount, fx_rate) -%}
    cast(round({{ amount }} * {{ fx_rate }}, 2) as numeric(18, 2))
{%- endmacro %}
