{#- PostgreSQL plans joins from table statistics; a table dbt has just (re)built has none until autovacuum gets to
    it, and with "1 row" estimates the candidate joins degrade into nested loops over every click. Every model
    is analysed right after it is built (a view has no statistics of its own). DuckDB keeps its statistics itself:
    nothing to do there. -#}
{% macro analyze_relation(relation) -%}
    {{- return(adapter.dispatch('analyze_relation', 'link_attribution')(relation)) -}}
{%- endmacro %}

{% macro default__analyze_relation(relation) -%}{%- endmacro %}

{% macro postgres__analyze_relation(relation) -%}
    {%- if config.get('materialized') != 'view' -%}
    analyze {{ relation }}
    {%- endif -%}
{%- endmacro %}
