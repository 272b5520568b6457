{#- transform_session(enabled): PostgreSQL session settings of a model build, set by a pre-hook for the model's own
    statement and reset by a post-hook (dbt_project.yml, every model). Nothing to do on DuckDB, which sizes its
    operators from its memory_limit and has neither merge joins nor JIT compilation. Measured at 1M clicks:

    work_mem (var pg_work_mem, from ATTRIBUTION_PG_WORK_MEM, default 256MB): at the server default of 4MB the hash
        tables of a model's lookups (300k distinct IPs, popularity counts) split into batches that write the wide
        rows to temporary files.
    enable_mergejoin off: the models' joins are equi-joins whose smaller side fits in work_mem, but PostgreSQL
        plans them from row estimates of CTEs and filtered windows that are off by 10-1000x, and then sorts every
        raw click (staging's lookups: 50 s against 37 s) or tens of millions of candidate rows (a 44M-row sort in
        int_match_candidates) for a merge join; a hash join is always the right plan here.
    jit off: compiling the models' large expression trees took 3-11 s per model (9 s of 53 s for
        int_match_candidates, 11 s of 16 s for rejected_rows), more than the compiled code ever saved. -#}
{% macro transform_session(enabled) -%}
    {{- return(adapter.dispatch('transform_session', 'link_attribution')(enabled)) -}}
{%- endmacro %}

{% macro default__transform_session(enabled) -%}{%- endmacro %}

{% macro postgres__transform_session(enabled) -%}
    {%- if enabled -%}
    set work_mem = '{{ var("pg_work_mem") }}'; set enable_mergejoin = off; set jit = off
    {%- else -%}
    reset work_mem; reset enable_mergejoin; reset jit
    {%- endif -%}
{%- endmacro %}


{#- single_threaded_session(enabled): a pre-hook that builds the model on one thread on DuckDB when `enabled`, and
    a post-hook (enabled false) that resets threads to DuckDB's default, one per core. Each thread keeps hash tables
    of its own, and int_match_candidates holds its joins, aggregates and materialised CTEs at once: over a month of
    conversions at 10M clicks it needed more than the 2 GB memory_limit on two threads ("failed to pin block") and
    builds in 38 s on one; over the hourly job's two days it builds in 7 s on two threads against 13 s on one, so
    it goes single-threaded only for windows of more than a week (full runs, backfills, the daily job). Nothing on
    the other engines, which size their work differently. -#}
{% macro single_threaded_session(enabled) -%}
    {{- return(adapter.dispatch('single_threaded_session', 'link_attribution')(enabled)) -}}
{%- endmacro %}

{% macro default__single_threaded_session(enabled) -%}{%- endmacro %}

{% macro duckdb__single_threaded_session(enabled) -%}
    {%- if enabled -%}
    set threads = 1
    {%- else -%}
    reset threads
    {%- endif -%}
{%- endmacro %}


{#- postgres_short_window_materialized(): the CTE hint of a model's click inputs: `materialized` on PostgreSQL over a
    short window (int_short_window), `not materialized` otherwise (int_match_candidates says why). -#}
{% macro postgres_short_window_materialized() -%}
    {{- return('materialized' if target.type == 'postgres' and int_short_window() else 'not materialized') -}}
{%- endmacro %}
