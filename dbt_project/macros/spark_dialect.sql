{#- The Spark target's bridge from the portable SQL the models are written in (what DuckDB and PostgreSQL share) to
    Spark SQL. Dialect that a dispatched macro already covers is overridden there (spark__<macro> beside the
    default); what the models write inline is translated here, once, where dbt-spark hands a model's SQL to Spark:
    - CTE hints `as [not] materialized (`: optimiser hints only, which Spark has no syntax for (its optimiser decides);
    - SQL-standard type names Spark lacks: text, varchar, double precision, timestamp with time zone (Spark's
      timestamp is an instant, like timestamptz);
    - strpos(a, b), which Spark calls instr(a, b) (same 1-based position, 0 when absent).
    Only code outside single-quoted literals and comments is translated. -#}
{% macro spark_dialect(sql) -%}
    {%- set re = modules.re -%}
    {#- Literals and comments are kept as they are (a comment's apostrophe opens no literal). -#}
    {%- set parts = re.split("('(?:[^']|'')*'|--[^\n]*|/[*](?:.|\n)*?[*]/)", sql) -%}
    {%- set out = [] -%}
    {%- for part in parts -%}
        {%- if loop.index0 % 2 == 1 -%}
            {%- do out.append(part) -%}
        {%- else -%}
            {%- set p = re.sub("(?i)\\bas\\s+(not\\s+)?materialized\\s*\\(", "as (", part) -%}
            {%- set p = re.sub("(?i)\\btimestamp\\s+with\\s+time\\s+zone\\b", "timestamp", p) -%}
            {%- set p = re.sub("(?i)\\bdouble\\s+precision\\b", "double", p) -%}
            {%- set p = re.sub("(?i)\\bas\\s+(text|varchar)\\b(?!\\s*\\()", "as string", p) -%}
            {%- set p = re.sub("(?i)\\bstrpos\\s*\\(", "instr(", p) -%}
            {%- do out.append(p) -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(out | join('')) -}}
{%- endmacro %}


{#- dbt-spark's own macros, with the model's SQL translated first (they live in the dbt namespace: the root project's
    spark__ versions take precedence). -#}
{% macro spark__create_table_as(temporary, relation, compiled_code, language='sql') -%}
    {%- if language == 'sql' -%}
        {{- dbt.spark__create_table_as(temporary, relation, link_attribution.spark_dialect(compiled_code), language) -}}
    {%- else -%}
        {{- dbt.spark__create_table_as(temporary, relation, compiled_code, language) -}}
    {%- endif -%}
{%- endmacro %}

{% macro spark__create_view_as(relation, sql) -%}
    {{- dbt.spark__create_view_as(relation, link_attribution.spark_dialect(sql)) -}}
{%- endmacro %}

{% macro spark__get_test_sql(main_sql, fail_calc, warn_if, error_if, limit) -%}
    {{- dbt.default__get_test_sql(link_attribution.spark_dialect(main_sql), fail_calc, warn_if, error_if, limit) -}}
{%- endmacro %}

{#- A contract's check runs the model's SQL and the yml's declared types as empty queries: both translated too. -#}
{% macro spark__get_empty_subquery_sql(select_sql, select_sql_header=none) -%}
    {{- dbt.default__get_empty_subquery_sql(link_attribution.spark_dialect(select_sql), select_sql_header) -}}
{%- endmacro %}

{% macro spark__get_empty_schema_sql(columns) -%}
    {{- link_attribution.spark_dialect(dbt.default__get_empty_schema_sql(columns)) -}}
{%- endmacro %}

{#- Grants (the BI reader's, PostgreSQL only) resolve to empty lists elsewhere; open-source Spark has no GRANT or
    SHOW GRANTS, so nothing is applied unless a grantee is actually configured. -#}
{% macro spark__apply_grants(relation, grant_config, should_revoke=True) -%}
    {%- set grantees = [] -%}
    {%- for privilege, names in (grant_config or {}).items() -%}
        {%- do grantees.extend(names or []) -%}
    {%- endfor -%}
    {%- if grantees -%}
        {{ dbt.default__apply_grants(relation, grant_config, should_revoke) }}
    {%- endif -%}
{%- endmacro %}

{#- dbt-spark's listagg drops the order (collect_list; it warns); Spark 4 has the standard ordered aggregate, and path
    keys (int_non_converting_paths) are only right in click order. -#}
{% macro spark__listagg(measure, delimiter_text, order_by_clause, limit_num) -%}
    {%- if limit_num -%}
        {{ exceptions.raise_compiler_error("listagg with a limit is not supported on the spark target") }}
    {%- endif -%}
    listagg({{ measure }}, {{ delimiter_text }}){% if order_by_clause %} within group ({{ order_by_clause }}){% endif %}
{%- endmacro %}
